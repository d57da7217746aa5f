"""Stage normalize: the bridge's ``WebhookEvent`` bytes (``wa-inbound``) to typed, deduplicated
``InboundMessage`` / ``StatusUpdate`` / ``BusinessError`` records on ``wa-normalized``.

Dedupe (invariant 4): Meta retries webhooks and the bridge may produce a record twice, so each
customer key keeps the ids it has already passed on (wamid for a message, ``wamid:status`` for a
status) in the changelog-backed table ``normalize-seen``. The table is keyed like the topic, so
the key's lane is the only writer of its entry: the read-then-write inside one lane is atomic.
The record is sent (and acked by the broker) before its id is remembered; a crash in between
sends it again, which the next stages' own idempotency absorbs, rather than losing it.
"""

from __future__ import annotations

import logging

import faust
import orjson
from faust.types import EventT
from prometheus_client import Counter
from pydantic import ValidationError

from wabridge.agents.context import StageContext, send_and_wait
from wabridge.errors import PermanentError
from wabridge.schemas.meta import normalize
from wabridge.schemas.records import BusinessError, InboundMessage, PreferenceUpdate, StatusUpdate, WebhookEvent
from wabridge.streams.app import create_table, stage_topic
from wabridge.streams.lanes import run_in_lanes
from wabridge.streams.topics import WA_INBOUND, WA_NORMALIZED

log = logging.getLogger(__name__)

STAGE = "normalize"
SEEN_TABLE = "normalize-seen"
# Ids remembered per customer. Meta's retries and the bridge's duplicates arrive within minutes,
# and one customer rarely has 500 events in flight; bounded so the table does not grow forever.
SEEN_PER_CUSTOMER = 500

DEDUPLICATED = Counter("wabridge_normalize_duplicates_total", "Events normalize dropped as already seen", ["kind"])
NORMALIZED = Counter("wabridge_normalize_events_total", "Events normalize passed on", ["kind"])


def dedupe_id(record: InboundMessage | StatusUpdate | BusinessError | PreferenceUpdate, event: WebhookEvent) -> str:
    if isinstance(record, InboundMessage):
        return record.wamid
    if isinstance(record, StatusUpdate):
        return record.dedupe_key
    if isinstance(record, PreferenceUpdate):
        return f"preference:{record.category}:{record.preference}:{record.timestamp}"
    return f"error:{event.event_id}"


def register_normalize(app: faust.App, ctx: StageContext) -> faust.Table:
    """Add the normalize agent and its dedupe table to ``app``; returns the table."""
    settings = ctx.settings
    source = stage_topic(app, settings, WA_INBOUND)
    target = stage_topic(app, settings, WA_NORMALIZED)
    seen = create_table(app, SEEN_TABLE, default=list, help="Ids of events already normalized, per customer")

    async def handle(event: EventT) -> None:
        raw = event.value if isinstance(event.value, bytes) else b""
        try:
            if not isinstance(event.key, str) or not event.key:
                raise PermanentError("record has no key", reason="no_key")
            webhook_event = WebhookEvent.from_bytes(raw)
            if webhook_event.key != event.key:
                raise PermanentError(f"record key {webhook_event.key!r} is not its Kafka key", reason="key_mismatch")
            record = normalize(webhook_event)
        except (ValidationError, orjson.JSONDecodeError) as exc:
            error = PermanentError(f"not a WebhookEvent record: {exc}".splitlines()[0], reason="invalid_record")
            await ctx.fail_record(STAGE, event, error)
            return
        except PermanentError as exc:
            await ctx.fail_record(STAGE, event, exc)
            return
        key: str = event.key
        record_id = dedupe_id(record, webhook_event)
        already: list[str] = seen[key]
        if record_id in already:
            DEDUPLICATED.labels(webhook_event.kind.value).inc()
            log.debug("normalize: duplicate %s of tenant %s skipped", record_id, webhook_event.tenant_id)
            return
        await ctx.retrying(STAGE, lambda: send_and_wait(target, key, record.to_bytes()))
        seen[key] = [*already[-(SEEN_PER_CUSTOMER - 1) :], record_id]
        NORMALIZED.labels(webhook_event.kind.value).inc()

    async def normalize_agent(stream: faust.StreamT) -> None:
        await run_in_lanes(stream, ctx.guarded(STAGE, handle), batch_size=500)

    app.agent(source, name=f"{__name__}.normalize", concurrency=1)(normalize_agent)
    return seen
