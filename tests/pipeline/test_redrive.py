"""``wabridge redrive`` from both dead-letter places: what matches goes through again after a fix,
what was delivered already is not delivered twice, what does not match stays."""

from __future__ import annotations

import asyncio
import sys

import aio_pika
import orjson

from tests.integration.edge_fixtures import settings_env
from tests.pipeline.conftest import ACME, GLOBEX, Pipeline, pg_rows, wait_for
from tests.pipeline.test_faults import texts
from wabridge.connectors import rabbitmq
from wabridge.redrive import Filters, redrive_dead_letter_queues, redrive_error_events
from wabridge.simulators.customer import InboundSpec, build_message, build_webhook, encode_webhook
from wabridge.streams.topics import DEAD_LETTER_SUFFIX, INBOUND_WHATSAPP_MESSAGES


def webhook(tenant_phone: str, wamid: str, customer: str, text: str) -> bytes:
    payload = build_webhook(
        waba_id="1", display_phone_number="15550783881", phone_number_id=tenant_phone,
        messages=[build_message(InboundSpec(kind="text", wa_id=customer, wamid=wamid, text=text))],
    )  # fmt: skip
    return encode_webhook(payload)


async def dead_letter(pipeline: Pipeline, body: bytes, tenant: str, phone: str, reason: str) -> None:
    """A webhook as the bridge dead-letters it: body, edge headers and the reason."""
    settings = pipeline.settings
    connection = await rabbitmq.connect(settings)
    try:
        channel = await connection.channel(publisher_confirms=True)
        headers = {
            "source": "meta",
            "tenants": orjson.dumps({phone: tenant}).decode(),
            "received_at": "1750000000.000000",
            "x-wabridge-reason": reason,
        }
        await channel.default_exchange.publish(
            aio_pika.Message(body, headers=headers, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=settings.queue(INBOUND_WHATSAPP_MESSAGES) + DEAD_LETTER_SUFFIX,
        )
    finally:
        await connection.close()


async def dead_letter_count(pipeline: Pipeline) -> int:
    return (await pipeline.dead_lettered())[pipeline.settings.queue(INBOUND_WHATSAPP_MESSAGES) + DEAD_LETTER_SUFFIX]


async def test_redrive_from_the_dead_letter_queue(pipeline: Pipeline) -> None:
    [delivered] = await pipeline.send(ACME, [InboundSpec(kind="text", wa_id="16505551001", text="already there")])
    await pipeline.wait_arrived(ACME, [delivered])
    delivered_body = webhook(ACME.phone_number_id, delivered, "16505551001", "already there")
    await dead_letter(pipeline, delivered_body, "acme", ACME.phone_number_id, "splitter bug, since fixed")
    await dead_letter(
        pipeline, webhook(ACME.phone_number_id, "wamid.redrive.new", "16505551001", "new"), "acme",
        ACME.phone_number_id, "splitter bug, since fixed",
    )  # fmt: skip
    await dead_letter(
        pipeline, webhook(GLOBEX.phone_number_id, "wamid.redrive.globex", "16505551002", "g"), "globex",
        GLOBEX.phone_number_id, "another reason",
    )  # fmt: skip

    command = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wabridge", "redrive", "--from", "dlq", "--tenant", "acme", "--dry-run",
        env=settings_env(pipeline.settings), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output = (await command.communicate())[0].decode()
    assert command.returncode == 0, output
    assert "dlq: 3 found, 2 matching, 2 would redrive" in output
    assert "splitter bug, since fixed" in output
    assert await dead_letter_count(pipeline) == 3  # a dry run changes nothing

    summary = await redrive_dead_letter_queues(pipeline.settings, Filters(tenant="acme"), dry_run=False)
    assert (summary.found, summary.matched, summary.redriven) == (3, 2, 2)
    await pipeline.wait_arrived(ACME, [delivered, "wamid.redrive.new"])
    assert sorted(pipeline.arrived_ids(ACME)) == sorted([delivered, "wamid.redrive.new"])  # none twice
    assert await dead_letter_count(pipeline) == 1  # globex's stays
    assert pipeline.arrived_ids(GLOBEX) == []


async def test_redrive_from_error_events_after_a_fix(pipeline: Pipeline) -> None:
    integration = pipeline.genesys.integrations[ACME.integration_id]
    pipeline.genesys.remove_integration(ACME.integration_id)  # Genesys answers 404: the message fails
    failed = await pipeline.send(ACME, texts(["16505551101"], 2, "lost "))

    async def tracked_failed() -> bool:
        rows = await pg_rows(
            pipeline.settings, "SELECT 1 FROM message_tracking WHERE status = 'failed' AND message_id = ANY($1)", failed
        )
        return len(rows) == len(failed)

    await wait_for(tracked_failed, 60, "the messages tracked as failed", pipeline)
    assert pipeline.arrived_ids(ACME) == []

    pipeline.genesys.upsert_integration(integration)  # the fix
    dry = await redrive_error_events(pipeline.settings, Filters(tenant="acme", reason="genesys_404"), dry_run=True)
    assert (dry.matched, dry.redriven) == (2, 0)
    summary = await redrive_error_events(pipeline.settings, Filters(tenant="acme"), dry_run=False)
    assert (summary.matched, summary.redriven, summary.reopened) == (2, 2, 2)
    await pipeline.wait_arrived(ACME, failed)
    assert [a.body["text"] for a in pipeline.arrived(ACME)] == ["lost 16505551101 #0", "lost 16505551101 #1"]

    # Redriven again: the Genesys ids are stored, nothing is sent twice.
    again = await redrive_error_events(pipeline.settings, Filters(tenant="acme"), dry_run=False)
    assert again.redriven == 2
    sent = await pipeline.send(ACME, [InboundSpec(kind="text", wa_id="16505551101", text="after")])
    await pipeline.wait_arrived(ACME, sent)  # behind the redriven ones in the customer's order
    assert sorted(pipeline.arrived_ids(ACME)) == sorted(failed + sent)
