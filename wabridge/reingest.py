"""``wabridge reingest``: send archived (and quarantined) webhooks through the normal path again.

    wabridge reingest --tenant acme --from 2026-12-03T08:00 --to 2026-12-03T09:00 [--wamid W …] [--dry-run]

The raw archive keeps every webhook the edge accepted (``connectors.archive``), the quarantine
every signed body or part the pipeline could not take (a number nobody owned yet, a disabled
tenant, a malformed body). For the tenant's webhooks received in the window (optionally only those
carrying the given wamids), each is published again onto the inbound queue with its original
received time, as the edge would, and the bridge and the stages take it from there.

Idempotent, decided per message from tracking:
* every message of the webhook reached Genesys (it has a Genesys id): *already delivered*, not
  sent;
* a message is tracked but not yet delivered: *in the pipeline* (on its way, held, or failed:
  ``wabridge trace`` says where, ``wabridge redrive`` sends failed ones again), not sent;
* otherwise (never tracked: lost before the stages, or quarantined and since fixed): *re-sent*.
Statuses of outbound messages in a webhook are re-sent with it; the stages ignore what they have.

A progress bar while it reads, then a summary: found, re-sent, already delivered, in the
pipeline, failed (a publish RabbitMQ did not confirm).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import click
import orjson
from miniopy_async.api import Minio

from wabridge.connectors import archive, postgres, s3
from wabridge.connectors.rabbitmq import DurablePublisher
from wabridge.connectors.webhook import QUARANTINE_PREFIX, meta_queue_headers, original_body
from wabridge.errors import ConfigurationError, TransientError
from wabridge.schemas.meta import WebhookShapeError, message_ids, parse_webhook, phone_number_ids
from wabridge.settings import Settings
from wabridge.streams.topics import INBOUND_WHATSAPP_MESSAGES
from wabridge.tenants import SecretBox, TenantStore


@dataclass(frozen=True)
class Archived:
    """A webhook to consider: its body as Meta sent it (or the part kept), when, and from where."""

    source: str  # the archive address, or the quarantine object
    received_at: datetime
    body: bytes


@dataclass
class Summary:
    found: int = 0
    resent: int = 0
    already_delivered: int = 0
    in_pipeline: int = 0
    failed: int = 0
    resent_ids: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    # The window searched: the one asked for, within what the archive can still hold.
    searched: tuple[datetime, datetime] | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "searched": [at.isoformat() for at in self.searched] if self.searched else None,
            "found": self.found,
            "resent": self.resent,
            "already_delivered": self.already_delivered,
            "in_pipeline": self.in_pipeline,
            "failed": self.failed,
            "resent_message_ids": self.resent_ids,
            "failures": self.failures,
        }


async def archived_in(
    storage: Minio, bucket: str, tenant_id: str, start: datetime, end: datetime
) -> AsyncIterator[Archived]:
    """The tenant's archived and quarantined webhooks received in [start, end), oldest first per day."""
    day = start.date()
    while day <= end.date():
        stamp = day.strftime("%Y-%m-%d")
        async for webhook in archive.find(storage, bucket, tenant_id, stamp):
            at = datetime.fromisoformat(webhook.received_at.replace("Z", "+00:00"))
            if start <= at < end:
                yield Archived(webhook.key, at, original_body(webhook.document))
        prefix = f"{QUARANTINE_PREFIX}/{tenant_id}/{stamp}/"
        async for obj in storage.list_objects(bucket, prefix=prefix, recursive=True):
            name = obj.object_name or ""
            stamped = _quarantine_time(name)
            if stamped is None or not start <= stamped < end:
                continue
            body = await s3.get_bytes(storage, bucket, name)
            yield Archived(name, stamped, body)
        day += timedelta(days=1)


def _quarantine_time(name: str) -> datetime | None:
    """``quarantine/{tenant}/{day}/{unix seconds}-{hash}.json`` → its time; None for any other name
    (an object someone else put there is skipped, not a reason to stop)."""
    seconds, _, _ = name.rsplit("/", 1)[-1].partition("-")
    try:
        return datetime.fromtimestamp(int(seconds), tz=UTC) if seconds.isdigit() else None
    except (OverflowError, OSError, ValueError):
        return None


async def reingest(
    settings: Settings,
    tenant_id: str,
    start: datetime,
    end: datetime,
    *,
    wamids: Sequence[str] = (),
    dry_run: bool = False,
    progress: bool = False,
) -> Summary:
    # Nothing older than the archive's retention is left, and nothing is archived ahead of now: a
    # window of "everything" (--from 0001-01-01) reads the days that can hold webhooks, not millions.
    now = datetime.now(UTC)
    start = max(start, now - timedelta(days=settings.s3_webhooks_retention_days + 1))
    end = min(end, now + timedelta(days=1))
    summary = Summary(searched=(start, end))
    if start >= end:
        return summary
    pool = await postgres.connect(settings, min_size=1, max_size=2)
    storage = s3.client(settings)
    publisher = DurablePublisher(settings)
    try:
        # The tenant's numbers now (a number added since a part was quarantined counts).
        store = TenantStore(pool, SecretBox.from_settings(settings))
        owned = {p.phone_number_id for p in (await store.get(tenant_id)).phone_numbers}
        found = [w async for w in archived_in(storage, settings.s3_bucket_webhooks, tenant_id, start, end)]
        with click.progressbar(found, label="webhooks", file=None if progress else io.StringIO()) as bar:
            for webhook in bar:
                try:
                    parsed = parse_webhook(webhook.body)
                except WebhookShapeError as exc:
                    summary.found += 1
                    summary.failed += 1
                    summary.failures.append(f"{webhook.source}: {exc}")
                    continue
                ids = message_ids(parsed)
                if wamids and not set(ids) & set(wamids):
                    continue
                summary.found += 1
                state = await _state(pool, tenant_id, ids)
                if ids and state == "delivered":
                    summary.already_delivered += 1
                    continue
                if state == "tracked":
                    summary.in_pipeline += 1
                    continue
                numbers = {n: tenant_id for n in phone_number_ids(parsed) if n in owned}
                if not numbers:
                    summary.failed += 1
                    summary.failures.append(f"{webhook.source}: none of its numbers belongs to {tenant_id} now")
                    continue
                if dry_run:
                    summary.resent += 1
                    summary.resent_ids += ids
                    continue
                headers = {**meta_queue_headers(numbers, webhook.received_at, webhook.source), "reingested": "1"}
                try:
                    await publisher.publish(settings.queue(INBOUND_WHATSAPP_MESSAGES), webhook.body, headers)
                except TransientError as exc:
                    summary.failed += 1
                    summary.failures.append(f"{webhook.source}: not queued: {exc}")
                    continue
                summary.resent += 1
                summary.resent_ids += ids
    finally:
        await publisher.close()
        await s3.close(storage)
        await pool.close()
    return summary


async def _state(pool: asyncpg.Pool, tenant_id: str, ids: Sequence[str]) -> str:
    """``new`` when a customer's message of the webhook was never tracked, else ``tracked`` when
    one is not delivered yet, else ``delivered``. Ids of statuses (of the bridge's own sends,
    tracked outbound) decide nothing."""
    rows = await pool.fetch(
        "SELECT direction, message_id, genesys_message_id FROM message_tracking"
        " WHERE tenant_id = $1 AND message_id = ANY($2::text[])",
        tenant_id,
        list(ids),
    )
    outbound = {r["message_id"] for r in rows if r["direction"] == "outbound"}
    inbound = {r["message_id"]: r["genesys_message_id"] for r in rows if r["direction"] == "inbound"}
    customers = [i for i in ids if i not in outbound]
    if not customers or all(inbound.get(i) for i in customers):
        return "delivered"
    if any(i not in inbound for i in customers):
        return "new"
    return "tracked"


def _when(value: str) -> datetime:
    at = datetime.fromisoformat(value)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@click.command("reingest")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--from", "start", required=True, help="ISO time (UTC unless it says otherwise), inclusive")
@click.option("--to", "end", required=True, help="ISO time, exclusive")
@click.option("--wamid", "wamids", multiple=True, help="Only webhooks carrying this message id (repeatable)")
@click.option("--dry-run", is_flag=True, help="Count what would be re-sent; send nothing")
@click.option("--json", "as_json", is_flag=True, help="The summary as one JSON object")
def reingest_command(
    tenant_id: str, start: str, end: str, wamids: tuple[str, ...], dry_run: bool, as_json: bool
) -> None:
    """Send archived and quarantined webhooks through the pipeline again; what was delivered is not."""
    try:
        window = (_when(start), _when(end))
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO time: {exc}") from exc
    try:
        summary = asyncio.run(
            reingest(Settings(), tenant_id, *window, wamids=wamids, dry_run=dry_run, progress=not as_json)
        )
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(orjson.dumps(summary.as_json()).decode())
    else:
        verb = "would be re-sent" if dry_run else "re-sent"
        if summary.searched:
            first, last = (at.isoformat(timespec="seconds") for at in summary.searched)
            click.echo(f"searched {first} to {last}" if first < last else "nothing to search: the window is empty")
        click.echo(
            f"found {summary.found}: {summary.resent} {verb}, {summary.already_delivered} already delivered, "
            f"{summary.in_pipeline} in the pipeline (see `wabridge trace`), {summary.failed} failed"
        )
        for failure in summary.failures[:20]:
            click.echo(f"  failed: {failure}", err=True)
    if summary.failed:
        raise SystemExit(1)
