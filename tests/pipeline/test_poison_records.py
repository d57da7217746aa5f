"""Poison records through the real processes: each is routed to ``error-events`` and tracked
``failed``; the same customer's next message and every other customer's messages still reach the
agent once and in order, and no process stops.

Before the stage guard, the first of these stopped the worker at every restart (a crash loop on
the partition) and the second was retried forever as "postgres unavailable".
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import orjson

from tests.integration.edge_fixtures import read_topic
from tests.pipeline.conftest import ACME, GLOBEX, Pipeline, pg_rows, wait_for
from tests.unit import meta_payloads as P
from wabridge.simulators.customer import InboundSpec, sign_webhook
from wabridge.streams.topics import ERROR_EVENTS

POISON_CUSTOMER = "16505550901"


def poison(kind: str, wamid: str, mutate: Any) -> bytes:
    message = P.get(kind)
    message.update({"id": wamid, "from": POISON_CUSTOMER})
    message.pop("from_user_id", None)
    mutate(message)
    body = P.single(message, contacts=[P.contact(wa_id=POISON_CUSTOMER, user_id=None)])
    body["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = ACME.phone_number_id
    return json.dumps(body).encode()


POISONS = {
    "wamid.poison.price": ("order", lambda m: m["order"]["product_items"][0].__setitem__("item_price", 1e30)),
    "wamid.poison.quantity": ("order", lambda m: m["order"]["product_items"][0].__setitem__("quantity", 10**30)),
    "wamid.poison.future": ("text", lambda m: m.__setitem__("timestamp", "99999999999999")),
    "wamid.poison.epoch": ("text", lambda m: m.__setitem__("timestamp", str(10**18))),  # OSError EOVERFLOW
    "wamid.poison.nulls": ("text", lambda m: m.update({"text": None, "context": None, "referral": None})),
    "wamid.poison.types": ("text", lambda m: m.update({"text": ["a", 1], "context": "not an object"})),
}


async def post_signed(pipeline: Pipeline, body: bytes) -> None:
    url = f"http://127.0.0.1:{pipeline.settings.webhook_port}/webhook/meta"
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign_webhook(ACME.app_secret, body)}
    async with pipeline.http.post(url, data=body, headers=headers) as response:
        assert response.status == 200, await response.text()


async def ready(pipeline: Pipeline, port: int) -> bool:
    try:
        async with pipeline.http.get(f"http://127.0.0.1:{port}/readyz") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def test_poison_records_are_routed_and_tracked_and_everyone_else_flows(pipeline: Pipeline) -> None:
    others = ["16505550902", "16505550903"]
    before = await pipeline.send(ACME, [InboundSpec(kind="text", wa_id=POISON_CUSTOMER, text="before")])
    for wamid, (kind, mutate) in POISONS.items():
        await post_signed(pipeline, poison(kind, wamid, mutate))
    customers = [POISON_CUSTOMER, *others]
    after = await pipeline.send(
        ACME, [InboundSpec(kind="text", wa_id=c, text=f"after {c} #{n}") for n in range(3) for c in customers]
    )
    globex = await pipeline.send(GLOBEX, [InboundSpec(kind="text", wa_id="16505550904", text="globex")])

    await pipeline.wait_arrived(ACME, before + after, timeout_s=90)
    await pipeline.wait_arrived(GLOBEX, globex)
    arrived = pipeline.arrived_ids(ACME)
    assert sorted(arrived) == sorted(set(arrived))  # each once
    texts = [a.body.get("text") for a in pipeline.arrived(ACME) if a.body["channel"]["from"]["id"] == POISON_CUSTOMER]
    # The poison ones that could be shown are; the rest did not stop the customer's next messages.
    assert texts[0] == "before"
    assert [t for t in texts if t and t.startswith("after")] == [f"after {POISON_CUSTOMER} #{n}" for n in range(3)]

    failed_ids = [w for w in POISONS if w not in arrived]
    assert failed_ids, "no poison record failed: the test poisons nothing"

    async def tracked_failed() -> bool:
        rows = await pg_rows(
            pipeline.settings,
            "SELECT message_id, error FROM message_tracking WHERE status = 'failed' AND message_id = ANY($1)",
            failed_ids,
        )
        return {r["message_id"] for r in rows} == set(failed_ids)

    await wait_for(tracked_failed, 30, "the poison messages tracked as failed", pipeline)
    errors = [orjson.loads(r.value) for r in await read_topic(pipeline.settings, ERROR_EVENTS, len(failed_ids))]
    routed = {e["message_id"]: e for e in errors}
    for wamid in failed_ids:
        assert routed[wamid]["tenant_id"] == "acme"
        assert routed[wamid]["reason"]
        assert routed[wamid]["value"], "the original record is kept for a redrive"
    assert await ready(pipeline, pipeline.settings.worker_port)
    assert await ready(pipeline, pipeline.settings.webhook_ops_port)
    assert all(p.proc is not None and p.proc.poll() is None for p in pipeline.processes.values())
