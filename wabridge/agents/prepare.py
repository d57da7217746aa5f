"""Stage prepare: ``wa-inbound`` → ``wa-ready``, each customer's event made ready for delivery.

One agent runs what were three stages with a topic between each: **normalize** (the bridge's
``WebhookEvent`` to a typed record, deduplicated: ``agents.normalize``), **resolve_conversation**
(the conversation, tracking, statuses, identity changes: ``agents.resolve_conversation``) and
**media** (attachments stored and presigned, only for messages that have media:
``agents.media``). The three share a key, a lane and the worker's tables, and none needs to scale
apart from the others, so the hops between them cost a produce, a fetch and a commit per message
for nothing (BENCHMARKS.md, "Fewer hops"). What remains on ``wa-ready`` is what Genesys is to get,
and the deliver stage scales with Genesys's latency on its own.

``wa-inbound`` also carries the ``MappingMove`` records of identity changes (keyed by the new
key). Records of the topics this stage replaced (``wa-normalized``, ``wa-resolved``), put back on
``wa-inbound`` by ``wabridge redrive``, are taken up at the step they had reached.
"""

from __future__ import annotations

import logging

import faust
import orjson

from wabridge.agents.context import StageContext, send_and_wait
from wabridge.agents.media import MediaStep
from wabridge.agents.normalize import DEDUPLICATED, NORMALIZED, check_key, dedupe_id, normalize_event, seen_ids
from wabridge.agents.normalize import STEP as NORMALIZE
from wabridge.agents.resolve_conversation import CONVERSATIONS_TABLE, ConversationResolver, ResolvableRecord
from wabridge.errors import PermanentError
from wabridge.schemas.records import (
    BusinessError,
    InboundMessage,
    PreferenceUpdate,
    ResolvedMessage,
    StatusUpdate,
    TemplateUpdate,
    WebhookEvent,
)
from wabridge.streams.app import create_table, stage_topic
from wabridge.streams.lanes import run_in_lanes
from wabridge.streams.topics import AGENT_MESSAGES, WA_INBOUND, WA_READY
from wabridge.streams.types import StageEvent, StageStream
from wabridge.tables.conversations import MappingMove

log = logging.getLogger(__name__)

STAGE = "prepare"

InboundRecord = WebhookEvent | ResolvableRecord | ResolvedMessage


def decode_inbound(raw: bytes) -> InboundRecord:
    """A record of ``wa-inbound``; each kind has a field the others lack (and forbid)."""
    value = orjson.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    if "kind" in value:
        return WebhookEvent.model_validate(value)
    if "mapping" in value:
        return MappingMove.model_validate(value)
    if "message" in value and "conversation" in value:
        return ResolvedMessage.model_validate(value)
    if "preference" in value:
        return PreferenceUpdate.model_validate(value)
    if "template_name" in value:
        return TemplateUpdate.model_validate(value)
    if "status" in value:
        return StatusUpdate.model_validate(value)
    if "error" in value:
        return BusinessError.model_validate(value)
    return InboundMessage.model_validate(value)


class Preparer:
    """The prepare lanes' handler; one per worker."""

    def __init__(self, app: faust.App, ctx: StageContext) -> None:
        settings = ctx.settings
        self.ctx = ctx
        self.ready = stage_topic(app, settings, WA_READY)
        self.seen = seen_ids(app)
        self.conversations = create_table(
            app, CONVERSATIONS_TABLE, help="ConversationMapping per tenant_id:customer_id"
        )
        self.source = stage_topic(app, settings, WA_INBOUND)
        self.resolver = ConversationResolver(ctx, self.conversations, stage_topic(app, settings, AGENT_MESSAGES))
        self.media = MediaStep(ctx)

    async def close(self) -> None:
        await self.media.close()

    async def handle(self, event: StageEvent) -> None:
        record = await self.ctx.decoded(NORMALIZE, event, decode_inbound, "a wa-inbound record")
        if record is None:
            return
        try:
            if not isinstance(record, WebhookEvent):
                check_key(record.key, event.key)
                await self.resolve_and_send(record, event)
                return
            normalized = normalize_event(record, event.key)
        except PermanentError as exc:
            await self.ctx.fail_record(NORMALIZE, event, exc)
            return
        key = record.key
        record_id = dedupe_id(normalized, record)
        if self.seen.seen(key, record_id):
            DEDUPLICATED.labels(record.kind.value).inc()
            log.debug("prepare: duplicate %s of tenant %s skipped", record_id, record.tenant_id)
            return
        NORMALIZED.labels(record.kind.value).inc()
        await self.resolve_and_send(normalized, event)
        self.seen.remember(key, record_id)

    async def resolve_and_send(self, record: ResolvableRecord | ResolvedMessage, event: StageEvent) -> None:
        resolved = record if isinstance(record, ResolvedMessage) else await self.resolver.resolve(record, event)
        if resolved is None:
            return
        ready = await self.media.prepare(resolved, event)
        if ready is None:
            return
        await self.ctx.retrying(STAGE, lambda: send_and_wait(self.ready, ready.key, ready.to_bytes()))


def register_prepare(app: faust.App, ctx: StageContext) -> Preparer:
    """Add the prepare agent (``wa-inbound`` → ``wa-ready``) and its tables to ``app``."""
    preparer = Preparer(app, ctx)

    async def prepare(stream: StageStream) -> None:
        # Media downloads take a while: many customers' events in flight at once, each customer in order.
        await run_in_lanes(stream, ctx.guarded(STAGE, preparer.handle), max_concurrency=256, batch_size=500)

    app.agent(preparer.source, name=f"{__name__}.prepare", concurrency=1)(prepare)
    return preparer
