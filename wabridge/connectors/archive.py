"""The raw webhook archive in S3: one object per batch of a tenant's webhooks, with an index.

Why batches: one S3 put per webhook was the edge's largest cost (BENCHMARKS.md, "Where the time
goes"). The edge hands each webhook to :class:`RawArchive` and waits for its batch, as the worker's
group commit does for PostgreSQL: while one put of a tenant is in flight, that tenant's next
webhooks gather, and they go in the next object together. At a low rate a batch holds one webhook
and costs what a single put did; at a high rate one put carries hundreds.

What an object holds (``{tenantId}/{yyyy-MM-dd}/{timestamp}-batch-{id}.wab``, in the webhooks
bucket, so a tenant's archive stays under its own prefix and the bucket's lifecycle rules apply
unchanged):

* line 1, the index: a JSON object ``{"format": "wabridge-archive/1", "tenant_id", "entries": [...]}``;
  each entry has ``key`` (the seed's per-webhook address,
  ``{tenantId}/{yyyy-MM-dd}/{timestamp}-{messageId}.json``), ``received_at``, ``ids`` (every wamid
  of the webhook's messages and statuses), and ``offset`` / ``length`` of its document;
* then the documents, each the seed's archive document (the raw body with ``metadata`` spliced in,
  :func:`wabridge.connectors.webhook.with_metadata`), at ``offset`` bytes after the index line.

So a webhook is found by tenant and day (the prefix), then by time or wamid (the index), and read
byte for byte (:func:`read_batch`, :func:`find`).

Only webhooks that RabbitMQ confirmed are written: each waits in its batch until the edge says
whether its publish was confirmed (:meth:`ArchiveTicket.confirm` or :meth:`ArchiveTicket.withdraw`),
and a refused webhook never appears in the archive (Meta will retry it, and that retry is archived).
The archive is a record for people, not the durable copy: that is the queue. A batch S3 would not
take after :data:`PUT_ATTEMPTS` is counted (``wabridge_webhook_archive_failures_total``) and logged
with its webhooks' ids, and the webhooks are answered as queued.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from miniopy_async.api import Minio
from prometheus_client import Counter, Histogram

from wabridge.connectors import s3

log = logging.getLogger(__name__)

FORMAT = "wabridge-archive/1"
SUFFIX = ".wab"
CONTENT_TYPE = "application/vnd.wabridge.archive"
PUT_ATTEMPTS = 3
# A batch stops growing at whichever comes first; the next webhooks start the next batch.
MAX_ENTRIES = 1000
MAX_BYTES = 16 * 1024 * 1024
# How long a batch's first webhook waits for others that arrive in the same moment.
GATHER_S = 0.002

FAILURES = Counter("wabridge_webhook_archive_failures_total", "Raw webhooks not archived to S3", ["tenant"])
BATCH_SIZE = Histogram(
    "wabridge_archive_batch_webhooks",
    "Webhooks per archive object",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)


@dataclass(frozen=True, slots=True)
class ArchivedWebhook:
    """One webhook read back from the archive."""

    key: str  # the seed's per-webhook address
    tenant_id: str
    received_at: str
    ids: tuple[str, ...]
    document: bytes  # the raw body with ``metadata`` spliced in
    batch: str  # the object that holds it


@dataclass(slots=True)
class ArchiveTicket:
    """A webhook waiting in a batch; the edge settles whether its publish was confirmed."""

    key: str
    tenant_id: str
    received_at: datetime
    ids: list[str]
    document: bytes
    published: asyncio.Future[bool]
    stored: asyncio.Future[bool]

    def confirm(self) -> None:
        if not self.published.done():
            self.published.set_result(True)

    def withdraw(self) -> None:
        """The webhook was not queued: leave it out of its batch."""
        if not self.published.done():
            self.published.set_result(False)

    async def wait_stored(self) -> bool:
        """True once its batch is in S3 (False when S3 would not take it, or it was withdrawn)."""
        return await asyncio.shield(self.stored)


@dataclass(slots=True)
class _TenantQueue:
    waiting: list[ArchiveTicket] = field(default_factory=list)
    flusher: asyncio.Task[None] | None = None


class RawArchive:
    """Batches the edge's raw webhooks into one S3 object per tenant at a time (see the module doc)."""

    def __init__(self, client: Minio, bucket: str) -> None:
        self._client = client
        self._bucket = bucket
        self._tenants: dict[str, _TenantQueue] = {}

    def add(self, tenant_id: str, key: str, received_at: datetime, ids: list[str], document: bytes) -> ArchiveTicket:
        """Queue a webhook for its tenant's next batch; settle the ticket, then ``wait_stored``."""
        loop = asyncio.get_running_loop()
        ticket = ArchiveTicket(key, tenant_id, received_at, ids, document, loop.create_future(), loop.create_future())
        queue = self._tenants.get(tenant_id)
        if queue is None:
            queue = self._tenants[tenant_id] = _TenantQueue()
        queue.waiting.append(ticket)
        if queue.flusher is None or queue.flusher.done():
            queue.flusher = loop.create_task(self._flush(tenant_id, queue), name=f"archive-{tenant_id}")
        return ticket

    async def close(self) -> None:
        """Write what is queued (the edge stops taking webhooks first)."""
        flushers = [q.flusher for q in self._tenants.values() if q.flusher is not None]
        if flushers:
            await asyncio.gather(*flushers, return_exceptions=True)

    async def _flush(self, tenant_id: str, queue: _TenantQueue) -> None:
        # One put in flight per tenant: the webhooks that arrive during it make the next batch.
        while queue.waiting:
            await asyncio.sleep(GATHER_S)
            batch: list[ArchiveTicket] = []
            size = 0
            while queue.waiting and len(batch) < MAX_ENTRIES and (not batch or size < MAX_BYTES):
                ticket = queue.waiting.pop(0)
                batch.append(ticket)
                size += len(ticket.document)
            await self._store(tenant_id, batch)
        if self._tenants.get(tenant_id) is queue and not queue.waiting:
            del self._tenants[tenant_id]

    async def _store(self, tenant_id: str, batch: list[ArchiveTicket]) -> None:
        try:
            await asyncio.gather(*(ticket.published for ticket in batch))
            kept = [ticket for ticket in batch if ticket.published.result()]
            stored = bool(kept) and await self._put(tenant_id, kept)
        except asyncio.CancelledError:
            for ticket in batch:
                _settle(ticket.stored, False)
            raise
        for ticket in batch:
            _settle(ticket.stored, stored and ticket.published.result())

    async def _put(self, tenant_id: str, batch: list[ArchiveTicket]) -> bool:
        first = batch[0].received_at
        name = f"{tenant_id}/{first:%Y-%m-%d}/{int(first.timestamp())}-batch-{uuid.uuid4().hex[:16]}{SUFFIX}"
        ids = [i for ticket in batch for i in ticket.ids]
        stored = await self.put_object(tenant_id, name, encode_batch(tenant_id, batch), ids, count=len(batch))
        if stored:
            BATCH_SIZE.observe(len(batch))
        return stored

    async def put_object(
        self,
        tenant_id: str,
        name: str,
        data: bytes,
        ids: list[str],
        *,
        count: int = 1,
        content_type: str = CONTENT_TYPE,
    ) -> bool:
        """Put ``data`` at ``name``, retried; False (counted, logged with ``ids``) when S3 would not take it."""
        for attempt in range(1, PUT_ATTEMPTS + 1):
            try:
                await s3.put_bytes(self._client, self._bucket, name, data, content_type=content_type)
                return True
            except Exception as exc:  # noqa: BLE001 - any S3 failure is retried, then counted and logged
                log.warning("archive %s/%s attempt %d failed: %r", self._bucket, name, attempt, exc)
                await asyncio.sleep(0.02 * attempt)
        FAILURES.labels(tenant_id).inc(count)
        log.error("%d raw webhooks of tenant %s (%s) not archived after %d attempts",
                  count, tenant_id, ids[:10], PUT_ATTEMPTS)  # fmt: skip
        return False


def _settle(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


def encode_batch(tenant_id: str, batch: list[ArchiveTicket]) -> bytes:
    """The object: the index line, then the documents at the offsets it names."""
    entries, offset = [], 0
    for ticket in batch:
        entries.append(
            {
                "key": ticket.key,
                "received_at": iso_utc(ticket.received_at),
                "ids": ticket.ids,
                "offset": offset,
                "length": len(ticket.document),
            }
        )
        offset += len(ticket.document)
    index = orjson.dumps({"format": FORMAT, "tenant_id": tenant_id, "entries": entries})
    return b"".join([index, b"\n", *(ticket.document for ticket in batch)])


def read_batch(name: str, data: bytes) -> list[ArchivedWebhook]:
    """Every webhook of the object ``name`` holding ``data``; ``ValueError`` when it is not one."""
    head, sep, body = data.partition(b"\n")
    try:
        index = orjson.loads(head) if sep else None
    except orjson.JSONDecodeError:
        index = None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise ValueError(f"{name} is not a {FORMAT} object")
    tenant_id = str(index["tenant_id"])
    return [
        ArchivedWebhook(
            key=entry["key"],
            tenant_id=tenant_id,
            received_at=entry["received_at"],
            ids=tuple(entry["ids"]),
            document=body[entry["offset"] : entry["offset"] + entry["length"]],
            batch=name,
        )
        for entry in index["entries"]
    ]


async def find(
    client: Minio,
    bucket: str,
    tenant_id: str,
    day: str,
    *,
    message_id: str | None = None,
) -> AsyncIterator[ArchivedWebhook]:
    """The tenant's webhooks archived on ``day`` (``yyyy-MM-dd``), in the order they were stored;
    with ``message_id``, only those that carry that wamid."""
    async for obj in client.list_objects(bucket, prefix=f"{tenant_id}/{day}/", recursive=True):
        name = obj.object_name
        if not name or not name.endswith(SUFFIX):
            continue
        data = await s3.get_bytes(client, bucket, name)
        for webhook in read_batch(name, data):
            if message_id is None or message_id in webhook.ids:
                yield webhook


def iso_utc(at: datetime) -> str:
    """A time as the archive writes it (UTC, milliseconds, ``Z``), so such times sort as text."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
