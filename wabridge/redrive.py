"""``wabridge redrive``: send dead-lettered work through the pipeline again, after a fix.

Two dead-letter places, one command:

* ``--from dlq``: the RabbitMQ dead-letter queues (``<queue>.dlq``), where the bridge put webhooks
  it could not make records of (and RabbitMQ put any message over its delivery limit). Each
  matching message is published back onto its queue (publisher confirm) with its body and edge
  headers, then taken off the dead-letter queue; the rest stay where they were.
* ``--from error-events``: records a stage routed to ``error-events``, each with its stage's
  source topic, key and original bytes. Each matching record is produced again to that topic,
  keyed as before (so on its customer's partition); a record of a topic an earlier version had
  (``wa-normalized``, ``wa-resolved``) goes to ``wa-inbound``, where the prepare stage takes it up.

Filters: ``--tenant``, ``--reason`` (a substring of the reason), ``--since``; ``--dry-run`` only
counts. Redriving is safe to repeat: what was delivered is deduped downstream (normalize on
wamid, deliver on the Genesys id it stored), so nothing reaches an agent twice. A customer's
message tracked ``failed`` is reopened (``tables.tracking.reopen_failed``) as it is redriven, since
the deliver stage skips failed messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import click
import orjson
from aio_pika.abc import AbstractIncomingMessage
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from wabridge.agents.context import identify_record
from wabridge.connectors import kafka, postgres, rabbitmq
from wabridge.connectors.bridge import tenant_of
from wabridge.observability import configure_logging
from wabridge.settings import Settings
from wabridge.streams.topics import DEAD_LETTER_SUFFIX, ERROR_EVENTS, QUEUES, current_topic
from wabridge.tables.tracking import reopen_failed

log = logging.getLogger(__name__)

REASON_HEADER = "x-wabridge-reason"
# A dead-letter queue is read until it has been quiet this long (its count is known beforehand).
_IDLE_S = 1.0


@dataclass(frozen=True, slots=True)
class Filters:
    tenant: str | None = None
    reason: str | None = None
    since: datetime | None = None

    def match(self, tenant: str | None, reason: str | None, at: datetime | None) -> bool:
        if self.tenant is not None and self.tenant not in (tenant or "").split(","):
            return False
        if self.reason is not None and self.reason not in (reason or ""):
            return False
        return self.since is None or at is None or at >= self.since


@dataclass
class Summary:
    """What a redrive found and did, by place."""

    found: int = 0
    matched: int = 0
    redriven: int = 0
    reopened: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def lines(self, place: str, dry_run: bool) -> list[str]:
        done = f"{self.matched} would redrive" if dry_run else f"{self.redriven} redriven"
        lines = [f"{place}: {self.found} found, {self.matched} matching, {done}"]
        if self.reopened:
            lines.append(f"  {self.reopened} failed messages reopened")
        lines += [f"  {count:6d}  {reason}" for reason, count in self.reasons.most_common(20)]
        return lines


# --- RabbitMQ dead-letter queues -------------------------------------------------------------------


async def redrive_dead_letter_queues(
    settings: Settings, filters: Filters, *, dry_run: bool, queues: Iterable[str] = QUEUES
) -> Summary:
    summary = Summary()
    connection = await rabbitmq.connect(settings)
    try:
        for base in queues:
            await _redrive_queue(connection, settings.queue(base), filters, dry_run, summary)
    finally:
        await connection.close()
    return summary


async def _redrive_queue(
    connection: aio_pika.abc.AbstractConnection, queue_name: str, filters: Filters, dry_run: bool, summary: Summary
) -> None:
    dead_name = queue_name + DEAD_LETTER_SUFFIX
    # Its own channel, closed at the end: what was not taken off (not matching, or a dry run) is
    # returned to the dead-letter queue as it was.
    channel = await connection.channel(publisher_confirms=True)
    try:
        dead = await channel.declare_queue(dead_name, passive=True)
        waiting = dead.declaration_result.message_count
        if not waiting:
            return
        await channel.set_qos(prefetch_count=waiting)
        taken: list[AbstractIncomingMessage] = []
        try:
            async with dead.iterator(timeout=_IDLE_S) as messages:
                async for message in messages:
                    taken.append(message)
                    if len(taken) >= waiting:
                        break
        except TimeoutError:
            pass
        for message in taken:
            summary.found += 1
            headers = dict(message.headers or {})
            reason = str(headers.get(REASON_HEADER, "over the delivery limit"))
            at = message.timestamp.replace(tzinfo=UTC) if message.timestamp else None
            if not filters.match(tenant_of(message), reason, at):
                continue
            summary.matched += 1
            summary.reasons[reason[:120]] += 1
            if dry_run:
                continue
            headers.pop(REASON_HEADER, None)
            headers["x-wabridge-redriven-from"] = dead_name
            await channel.default_exchange.publish(
                aio_pika.Message(
                    message.body,
                    headers=headers,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    content_type=message.content_type,
                ),
                routing_key=queue_name,
                mandatory=True,
            )
            await message.ack()
            summary.redriven += 1
            log.info("redrove a message of tenant %s from %s to %s", tenant_of(message), dead_name, queue_name)
    finally:
        await channel.close()


# --- error-events ----------------------------------------------------------------------------------


async def redrive_error_events(settings: Settings, filters: Filters, *, dry_run: bool) -> Summary:
    summary = Summary()
    records = await _read_error_events(settings)
    chosen: list[dict[str, Any]] = []
    for record in records:
        summary.found += 1
        at = datetime.fromtimestamp(record["_timestamp_ms"] / 1000, UTC)
        if not filters.match(record.get("tenant_id"), record.get("reason"), at):
            continue
        if not isinstance(record.get("topic"), str) or record.get("value") is None:
            log.warning("error-events record without topic or value skipped: %s", str(record)[:200])
            continue
        summary.matched += 1
        summary.reasons[f"{record.get('stage')}: {record.get('reason')}"] += 1
        chosen.append(record)
    if dry_run or not chosen:
        return summary
    pool = await postgres.connect(settings, min_size=1, max_size=2)
    producer = AIOKafkaProducer(**kafka.connection(settings), acks="all", partitioner=DefaultPartitioner())
    await producer.start()
    try:
        for record in chosen:
            value = _original_bytes(record["value"])
            who = identify_record(value)
            if who.inbound_message and who.tenant_id and who.message_id:
                summary.reopened += await reopen_failed(pool, who.tenant_id, [who.message_id])
            key = record.get("key")
            topic = current_topic(settings, record["topic"])
            await producer.send_and_wait(topic, value, key=key.encode() if isinstance(key, str) else None)
            summary.redriven += 1
    finally:
        await producer.stop()
        await pool.close()
    return summary


def _original_bytes(value: Any) -> bytes:
    """The record's bytes as the stage read them (kept decoded when they were JSON)."""
    return value.encode() if isinstance(value, str) else orjson.dumps(value)


async def _read_error_events(settings: Settings) -> list[dict[str, Any]]:
    """Every record on ``error-events`` up to its end when the redrive began."""
    topic = settings.topic(ERROR_EVENTS)
    consumer = AIOKafkaConsumer(**kafka.connection(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or set())]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or set())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await kafka.end_offsets(consumer, partitions)
        records: list[dict[str, Any]] = []
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, messages in batch.items():
                for message in messages:
                    if message.offset >= ends[tp]:
                        continue
                    try:
                        record = orjson.loads(message.value or b"")
                    except orjson.JSONDecodeError:
                        log.warning(
                            "unreadable error-events record at %s[%d]@%d", tp.topic, tp.partition, message.offset
                        )
                        continue
                    if isinstance(record, dict):
                        record["_timestamp_ms"] = message.timestamp
                        records.append(record)
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return records
    finally:
        await consumer.stop()


# --- CLI ---------------------------------------------------------------------------------------------


@click.command("redrive")
@click.option("--from", "place", type=click.Choice(["dlq", "error-events"]), required=True, help="Where from.")
@click.option("--tenant", help="Only this tenant's.")
@click.option("--reason", help="Only those whose reason contains this text.")
@click.option("--since", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]), help="ISO time (UTC).")
@click.option("--dry-run", is_flag=True, help="Count what would be redriven; change nothing.")
def redrive(place: str, tenant: str | None, reason: str | None, since: datetime | None, dry_run: bool) -> None:
    """Send dead-lettered webhooks or failed records through the pipeline again, after a fix."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format, "redrive")
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    filters = Filters(tenant=tenant, reason=reason, since=since)
    if place == "dlq":
        summary = asyncio.run(redrive_dead_letter_queues(settings, filters, dry_run=dry_run))
    else:
        summary = asyncio.run(redrive_error_events(settings, filters, dry_run=dry_run))
    for line in summary.lines(place, dry_run):
        click.echo(line)
