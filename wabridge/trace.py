"""``wabridge trace MESSAGE_ID``: where one message is, with times, for support.

Given a customer's wamid, an agent message's Genesys id, or the wamid WhatsApp gave one of its
parts, it shows each direction's path:

* inbound: received and archived (the archive address and the object holding it), its record on
  ``wa-inbound`` and ``wa-ready`` (partition, offset, time), taken by the prepare stage, accepted
  by Genesys (``genesys``: attempts, the Genesys message and conversation ids) and the receipt
  after it, or why it failed;
* outbound: the agent's message, each part sent to WhatsApp (its wamid, attempts, time) and the
  statuses WhatsApp reported.

Everything is read, nothing written: PostgreSQL (tracking, conversations, outbound sends), the
raw archive in S3, and the stage topics (from the message's time on, a bounded number of records
per partition). The customer is shown masked. The same answer is a worker view,
``GET /trace/{messageId}`` (with the deployment token).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import click
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from miniopy_async.api import Minio

from wabridge.connectors import archive, kafka, postgres, s3
from wabridge.masking import mask_customer_id
from wabridge.schemas.status import MessageStatus
from wabridge.settings import Settings
from wabridge.streams.topics import WA_INBOUND, WA_READY

# Records read per topic partition looking for the message, from its time on.
SCAN_LIMIT = 20_000
# The record can be stamped a little before the tracking row's time (the bridge, then the worker).
SCAN_LEAD_S = 30.0


async def trace(settings: Settings, message_id: str, tenant_id: str | None = None) -> dict[str, Any]:
    """Every tracked message that ``message_id`` names, each with its path (oldest step first)."""
    pool = await postgres.connect(settings, min_size=1, max_size=2)
    storage = s3.client(settings)
    try:
        return await trace_with(settings, pool, storage, message_id, tenant_id)
    finally:
        await s3.close(storage)
        await pool.close()


async def trace_with(
    settings: Settings, pool: asyncpg.Pool, storage: Minio, message_id: str, tenant_id: str | None = None
) -> dict[str, Any]:
    rows = await pool.fetch(
        """
        WITH hit AS (
            SELECT id, direction, genesys_message_id FROM message_tracking
            WHERE ($2::text IS NULL OR tenant_id = $2)
              AND (message_id = $1 OR genesys_message_id = $1 OR meta_message_id = $1)
        )
        SELECT t.*, m.genesys_conversation_id FROM message_tracking t
        LEFT JOIN conversation_mappings m ON m.tenant_id = t.tenant_id AND m.customer_id = t.customer_id
        WHERE t.id IN (SELECT id FROM hit)
           OR (t.direction = 'outbound' AND ($2::text IS NULL OR t.tenant_id = $2)
               AND t.genesys_message_id IN (SELECT genesys_message_id FROM hit WHERE direction = 'outbound'))
        ORDER BY t.created_at
        """,
        message_id,
        tenant_id,
    )
    messages = [await _inbound(settings, storage, row) for row in rows if row["direction"] == "inbound"]
    # An agent's message is tracked per part (each has its own wamid): one entry per message.
    agent_messages: dict[tuple[str, str], list[asyncpg.Record]] = {}
    for row in rows:
        if row["direction"] == "outbound":
            agent_messages.setdefault((row["tenant_id"], row["genesys_message_id"] or row["message_id"]), []).append(
                row
            )
    for (tenant, genesys_id), parts in agent_messages.items():
        messages.append(await _outbound(pool, tenant, genesys_id, parts))
    return {"messageId": message_id, "found": bool(messages), "messages": messages}


async def _inbound(settings: Settings, storage: Minio, row: asyncpg.Record) -> dict[str, Any]:
    tenant, wamid, customer = row["tenant_id"], row["message_id"], row["customer_id"]
    taken: datetime = row["created_at"]
    path: list[dict[str, Any]] = [await _received(settings, storage, tenant, wamid, taken)]
    if customer:
        path += await _on_topics(settings, f"{tenant}:{customer}", wamid, taken)
    path.append(_step(taken, "prepared", "taken by the prepare stage, tracked as received"))
    attempts = row["delivery_attempts"]
    if row["genesys_message_id"]:
        path.append(
            _step(
                row["delivered_at"],
                "genesys",
                f"Genesys accepted it ({attempts} attempt{'s' if attempts != 1 else ''})",
                attempts=attempts,
                genesysMessageId=row["genesys_message_id"],
                genesysConversationId=row["genesys_conversation_id"],
            )
        )
    elif attempts:
        path.append(_step(row["updated_at"], "delivering", f"{attempts} POST attempt(s), no answer kept yet"))
    if row["status"] in ("delivered", "read", "failed") or row["error"]:
        # Genesys's receipt for it (delivered, read), or why it failed.
        detail = f"status {row['status']}" + (f": {_reason(row['error'])}" if row["error"] else "")
        path.append(_step(row["updated_at"], row["status"], detail))
    path.sort(key=lambda step: step["at"] or "~")
    return {**_common(row), "path": path}


async def _outbound(pool: asyncpg.Pool, tenant: str, genesys_id: str, rows: list[asyncpg.Record]) -> dict[str, Any]:
    first = rows[0]
    path: list[dict[str, Any]] = [_step(first["created_at"], "agent message", "taken from Genesys's outbound webhook")]
    sends = await pool.fetch(
        "SELECT part, wamid, attempts, created_at, sent_at FROM outbound_sends"
        " WHERE tenant_id = $1 AND genesys_message_id = $2 ORDER BY part",
        tenant,
        genesys_id,
    )
    for send in sends:
        detail = f"part {send['part']}: " + ("sent to WhatsApp" if send["wamid"] else "send begun, no answer yet")
        at = send["sent_at"] or send["created_at"]
        path.append(_step(at, "sent", detail, wamid=send["wamid"], attempts=send["attempts"]))
    for row in rows:
        detail = f"{row['message_id']}: WhatsApp says {row['status']}"
        if row["error"]:
            detail += f": {_reason(row['error'])}"
        path.append(_step(row["updated_at"], row["status"], detail, wamid=row["message_id"]))
    path.sort(key=lambda step: step["at"] or "~")
    statuses = [row["status"] for row in rows]
    return {
        **_common(first),
        "messageId": genesys_id,
        "genesysMessageId": genesys_id,
        "wamids": [row["message_id"] for row in rows],
        # The message is as far as its least advanced part (any part failed: failed).
        "status": min((MessageStatus(s) for s in statuses), key=lambda s: -1 if s.is_terminal else s.rank).value,
        "path": path,
    }


def _common(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "direction": row["direction"],
        "tenantId": row["tenant_id"],
        "messageId": row["message_id"],
        "customer": mask_customer_id(row["customer_id"]),
        "conversationId": str(row["conversation_id"]) if row["conversation_id"] else None,
        "status": row["status"],
        "genesysMessageId": row["genesys_message_id"],
    }


async def _received(settings: Settings, storage: Minio, tenant: str, wamid: str, taken: datetime) -> dict[str, Any]:
    """When the edge received the webhook, and where the raw body is kept (the day it was taken,
    or the day before for one near midnight)."""
    for day in sorted({taken.strftime("%Y-%m-%d"), (taken - timedelta(minutes=5)).strftime("%Y-%m-%d")}):
        async for webhook in archive.find(storage, settings.s3_bucket_webhooks, tenant, day, message_id=wamid):
            detail = f"webhook received, archived at {webhook.key}"
            return _step(webhook.received_at, "received", detail, key=webhook.key, object=webhook.batch)
    return _step(None, "received", "not found in the raw archive")


async def _on_topics(settings: Settings, key: str, wamid: str, received: datetime) -> list[dict[str, Any]]:
    """The message's record on each stage topic: the key's partition, from the message's time on."""
    consumer = AIOKafkaConsumer(**kafka.connection(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        steps = []
        for name in (WA_INBOUND, WA_READY):
            topic = settings.topic(name)
            partitions = sorted(consumer.partitions_for_topic(topic) or set()) or list(range(settings.kafka_partitions))
            partition = DefaultPartitioner()(key.encode(), partitions, partitions)
            found = await _scan(consumer, TopicPartition(topic, partition), wamid.encode(), received)
            if found is None:
                steps.append(_step(None, name, f"not found on {topic}[{partition}]", topic=topic, partition=partition))
            else:
                offset, at = found
                detail = f"{topic}[{partition}]@{offset}"
                steps.append(_step(at, name, detail, topic=topic, partition=partition, offset=offset))
        return steps
    finally:
        await consumer.stop()


async def _scan(
    consumer: AIOKafkaConsumer, tp: TopicPartition, needle: bytes, since: datetime
) -> tuple[int, datetime] | None:
    consumer.assign([tp])
    start_ms = int((since.timestamp() - SCAN_LEAD_S) * 1000)
    found = (await consumer.offsets_for_times({tp: start_ms})).get(tp)
    if found is None:
        return None
    consumer.seek(tp, found.offset)
    end = (await kafka.end_offsets(consumer, [tp]))[tp]
    read = 0
    while read < SCAN_LIMIT and await consumer.position(tp) < end:
        batch = await consumer.getmany(tp, timeout_ms=2000, max_records=500)
        records = batch.get(tp, [])
        if not records:
            break
        for record in records:
            read += 1
            if record.value is not None and needle in record.value:
                return record.offset, datetime.fromtimestamp(record.timestamp / 1000, tz=since.tzinfo)
    return None


def _step(at: datetime | str | None, step: str, detail: str, **fields: Any) -> dict[str, Any]:
    # One form for every time (the archive's: UTC, milliseconds, Z), so the steps sort by it.
    when = archive.iso_utc(at) if isinstance(at, datetime) else at
    return {"at": when, "step": step, "detail": detail, **{k: v for k, v in fields.items() if v is not None}}


def _reason(error: Any) -> str:
    data = orjson.loads(error) if isinstance(error, str) else error
    if isinstance(data, dict):
        return str(data.get("reason") or data.get("message") or data)
    return str(data)


def render(report: dict[str, Any]) -> str:
    if not report["found"]:
        return f"{report['messageId']}: no tracked message has this id (a wamid, or an agent message's Genesys id)"
    blocks = []
    for message in report["messages"]:
        head = (
            f"{message['direction']} message {message['messageId']} · tenant {message['tenantId']} · "
            f"customer {message['customer']} · status {message['status']}"
        )
        lines = [head] + [f"  {step['at'] or '-':32} {step['step']:14} {step['detail']}" for step in message["path"]]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


@click.command("trace")
@click.argument("message_id")
@click.option("--tenant", "tenant_id", help="Only this tenant's messages")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts")
def trace_command(message_id: str, tenant_id: str | None, as_json: bool) -> None:
    """Where a message is: its whole path with times (a wamid, or an agent message's Genesys id)."""
    report = asyncio.run(trace(Settings(), message_id, tenant_id))
    click.echo(orjson.dumps(report).decode() if as_json else render(report))
    if not report["found"]:
        raise SystemExit(1)


def paths(report: dict[str, Any]) -> Sequence[str]:
    """The steps of every message in ``report``, by name (for tests and scripts)."""
    return [step["step"] for message in report["messages"] for step in message["path"]]
