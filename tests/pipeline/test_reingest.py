"""``wabridge reingest``: a time window holding delivered, lost-downstream and quarantined webhooks
is re-ingested from the archive, and exactly the missing messages reach the agent, once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import orjson

from tests.integration.edge_fixtures import save_tenants, settings_env
from tests.pipeline.conftest import ACME, Pipeline
from wabridge.connectors import rabbitmq
from wabridge.reingest import reingest
from wabridge.settings import Settings
from wabridge.simulators.customer import InboundSpec, build_message, build_webhook, new_wamid, sign_webhook
from wabridge.streams.topics import INBOUND_WHATSAPP_MESSAGES
from wabridge.tenants import PhoneNumber

CUSTOMER = "16505550777"
LATER_NUMBER = "106540352249999"  # a number of acme's that Meta used before acme told the bridge


async def purge_inbound_queue(settings: Settings) -> int:
    connection = await rabbitmq.connect(settings)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(settings.queue(INBOUND_WHATSAPP_MESSAGES), ensure=False)
        purged = await queue.purge()
        return int(purged.message_count or 0)
    finally:
        await connection.close()


def run_reingest(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wabridge", "reingest", "--tenant", "acme", *args, "--json"],
        env=settings_env(settings), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


async def test_reingest_delivers_exactly_the_missing_messages(pipeline: Pipeline) -> None:
    settings = pipeline.settings
    start = datetime.now(UTC) - timedelta(seconds=5)
    text = lambda body: InboundSpec(kind="text", wa_id=CUSTOMER, text=body, wamid=new_wamid())  # noqa: E731

    delivered = await pipeline.send(ACME, [text("first"), text("second")])
    await pipeline.wait_arrived(ACME, delivered)

    # Lost downstream: taken by the edge (archived, queued), then the queue loses it.
    bridge = pipeline.processes["bridge"]
    bridge.stop()
    [lost] = await pipeline.send(ACME, [text("lost in the queue")])
    assert await purge_inbound_queue(settings) == 1
    bridge.start()

    # Quarantined: one POST with acme's number and a number the bridge does not know yet.
    known, unknown = text("in a mixed webhook"), text("to the number added later")
    entries = []
    for spec, number in ((known, ACME.phone_number_id), (unknown, LATER_NUMBER)):
        payload = build_webhook(
            waba_id="102290129340398", display_phone_number=ACME.display_phone_number, phone_number_id=number,
            messages=[build_message(spec)],
        )  # fmt: skip
        entries += payload["entry"]
    body = orjson.dumps({"object": "whatsapp_business_account", "entry": entries})
    edge = f"http://127.0.0.1:{settings.webhook_port}/webhook/meta"
    headers = {"X-Hub-Signature-256": sign_webhook(ACME.app_secret, body), "Content-Type": "application/json"}
    async with pipeline.http.post(edge, data=body, headers=headers) as response:
        assert response.status == 200
    await pipeline.wait_arrived(ACME, [known.wamid or ""])
    # The fix: acme adds the number.
    acme = ACME.tenant(pipeline.meta.url, pipeline.genesys.url)
    later = PhoneNumber(phone_number_id=LATER_NUMBER, display_phone_number="15550789999")
    await save_tenants(settings, acme.model_copy(update={"phone_numbers": (*acme.phone_numbers, later)}))
    end = datetime.now(UTC) + timedelta(seconds=5)
    window = ["--from", start.isoformat(), "--to", end.isoformat()]

    dry = orjson.loads((await asyncio.to_thread(run_reingest, settings, *window, "--dry-run")).stdout)
    assert (dry["found"], dry["resent"], dry["already_delivered"], dry["failed"]) == (5, 2, 3, 0)
    assert pipeline.arrived_ids(ACME).count(lost) == 0

    done = await asyncio.to_thread(run_reingest, settings, *window)
    assert done.returncode == 0, done.stderr
    summary = orjson.loads(done.stdout)
    assert (summary["resent"], summary["already_delivered"]) == (2, 3)
    assert sorted(summary["resent_message_ids"]) == sorted([lost, unknown.wamid])
    await pipeline.wait_arrived(ACME, [lost, unknown.wamid or ""], timeout_s=90)
    arrived = pipeline.arrived_ids(ACME)
    every = [*delivered, lost, known.wamid, unknown.wamid]
    assert sorted(w for w in arrived if w in every) == sorted(every)  # each exactly once

    # Again: everything is delivered now, so nothing is sent at all.
    again = await reingest(settings, "acme", start, end)
    assert (again.found, again.resent, again.already_delivered) == (5, 0, 5)

    # "Everything" as the window reads only the days the archive can still hold, and finds the same.
    forever = await reingest(
        settings, "acme", datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC), dry_run=True
    )
    assert forever.searched is not None
    first, last = forever.searched
    assert timedelta(days=settings.s3_webhooks_retention_days) < datetime.now(UTC) - first
    assert first > datetime.now(UTC) - timedelta(days=settings.s3_webhooks_retention_days + 2)
    assert last < datetime.now(UTC) + timedelta(days=2)
    assert (forever.found, forever.resent, forever.already_delivered) == (5, 0, 5)
