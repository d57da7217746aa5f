"""``wabridge trace``: the first thing support runs. A customer's text, a photo and an agent's
reply, traced through the real edge, bridge, broker, worker and simulators."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from urllib.parse import quote

import orjson

from tests.integration.edge_fixtures import settings_env
from tests.pipeline.conftest import ACME, Pipeline, wait_for
from wabridge.settings import Settings
from wabridge.simulators.customer import InboundSpec
from wabridge.trace import paths, trace

CUSTOMER = "16505550901"


def wabridge_trace(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wabridge", "trace", *args], env=settings_env(settings), capture_output=True, text=True
    )


async def test_trace_shows_each_message_path(pipeline: Pipeline) -> None:
    specs = [
        InboundSpec(kind="text", wa_id=CUSTOMER, text="where is my parcel?"),
        InboundSpec(kind="image", wa_id=CUSTOMER, text="the label"),
    ]
    text_wamid, image_wamid = await pipeline.send(ACME, specs)
    await pipeline.wait_arrived(ACME, [text_wamid, image_wamid])
    settings = pipeline.settings

    for wamid in (text_wamid, image_wamid):
        report = await trace(settings, wamid)
        [message] = report["messages"]
        assert (message["direction"], message["tenantId"], message["messageId"]) == ("inbound", "acme", wamid)
        assert CUSTOMER not in orjson.dumps(report).decode()  # the customer is shown masked
        # Every step, in time order, starting where the edge received it.
        assert {"received", "wa-inbound", "prepared", "wa-ready", "genesys"} <= set(paths(report))
        times = [step["at"] for step in message["path"]]
        assert message["path"][0]["step"] == "received" and None not in times and times == sorted(times)
        steps = {step["step"]: step for step in message["path"]}
        assert steps["received"]["key"].startswith("acme/") and steps["received"]["object"].startswith("acme/")
        for topic in ("wa-inbound", "wa-ready"):
            assert isinstance(steps[topic]["offset"], int) and steps[topic]["topic"].endswith(topic)
        accepted = next(a for a in pipeline.arrived(ACME) if a.body["channel"]["messageId"] == wamid)
        assert steps["genesys"]["genesysMessageId"] == accepted.genesys_id
        assert steps["genesys"]["genesysConversationId"] == accepted.conversation_id

    # The agent answers; traced by its Genesys id and by the wamid WhatsApp gave it, one message.
    delivery = await pipeline.genesys.send_agent_message(ACME.integration_id, CUSTOMER, text="It leaves today.")

    async def sent() -> bool:
        return any(m.to == CUSTOMER for m in pipeline.meta.sent_messages(ACME.phone_number_id))

    await wait_for(sent, 60, "the agent's reply at Meta", pipeline)
    [sent_message] = [m for m in pipeline.meta.sent_messages(ACME.phone_number_id) if m.to == CUSTOMER]
    for asked in (delivery.message_id, sent_message.wamid):
        report = await trace(settings, asked)
        [message] = report["messages"]
        assert (message["direction"], message["genesysMessageId"]) == ("outbound", delivery.message_id)
        assert message["wamids"] == [sent_message.wamid]
        assert {"agent message", "sent"} <= set(paths(report))

    # The CLI, as support runs it: --json, and a clear "not found" with exit status 1.
    done = await asyncio.to_thread(wabridge_trace, settings, text_wamid, "--json")
    assert done.returncode == 0 and orjson.loads(done.stdout)["messages"][0]["messageId"] == text_wamid
    missing = await asyncio.to_thread(wabridge_trace, settings, "wamid.NOPE")
    assert missing.returncode == 1 and "no tracked message" in missing.stdout
    # The worker's view answers the same, with the deployment token.
    url = f"http://127.0.0.1:{settings.worker_port}/trace/{quote(image_wamid, safe='')}"
    async with pipeline.http.get(url) as response:
        assert response.status == 200
        assert (await response.json())["messages"][0]["messageId"] == image_wamid
