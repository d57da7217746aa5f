"""Stage media: ``wa-resolved`` → each message with its media stored and presigned on ``wa-ready``.

The work is ``wabridge.media.MediaFetcher.prepare``; this module wires it to the stream. Messages
without media pass straight through (same order, same lane). A transient failure (Meta, S3,
PostgreSQL) is retried in the lane, the customer's later messages waiting behind it, so a message
never goes on without its attachment; media that cannot be had travels as ``MediaUnavailable``,
which the agent reads as a note.
"""

from __future__ import annotations

import logging

import faust
from faust.types import EventT
from pydantic import ValidationError

from wabridge.agents import holds
from wabridge.agents.context import StageContext, send_and_wait
from wabridge.errors import PermanentError
from wabridge.media import MediaFetcher
from wabridge.schemas.records import MEDIA_TYPE_BY_WHATSAPP_TYPE, ResolvedMessage
from wabridge.streams.app import stage_topic
from wabridge.streams.lanes import run_in_lanes
from wabridge.streams.topics import WA_READY, WA_RESOLVED

log = logging.getLogger(__name__)

STAGE = "media"


class MediaStage:
    """The media lanes' handler; one per worker, with one fetcher (made on first use)."""

    def __init__(self, ctx: StageContext, ready: faust.TopicT) -> None:
        self.ctx = ctx
        self.ready = ready
        self._fetcher: MediaFetcher | None = None

    async def fetcher(self) -> MediaFetcher:
        if self._fetcher is None:
            directory = await self.ctx.directory()
            # Again after the await: lanes starting together share one fetcher (one memory budget).
            if self._fetcher is None:
                ctx = self.ctx
                self._fetcher = MediaFetcher.create(ctx.settings, tenants=directory, redis=ctx.redis, box=ctx.box)
        return self._fetcher

    async def close(self) -> None:
        if self._fetcher is not None:
            await self._fetcher.close()

    async def handle(self, event: EventT) -> None:
        raw = event.value if isinstance(event.value, bytes) else b""
        try:
            resolved = ResolvedMessage.from_bytes(raw)
        except (ValidationError, ValueError) as exc:
            error = PermanentError(f"not a ResolvedMessage: {exc}".splitlines()[0], reason="invalid_record")
            await self.ctx.route_error(STAGE, event, error)
            return
        message = resolved.message
        try:
            fetcher = await self.fetcher()
            # Media needs the tenant's WhatsApp token: it waits while Meta refuses that token (a
            # ``whatsapp`` hold); other messages pass straight through, held by nothing here.
            needs_token = message.type in MEDIA_TYPE_BY_WHATSAPP_TYPE
            ready = await self.ctx.retrying(
                STAGE,
                lambda: fetcher.prepare(resolved),
                tenant_id=message.tenant_id if needs_token else None,
                scope=holds.WHATSAPP,
            )
        except PermanentError as exc:
            await self.ctx.route_error(STAGE, event, exc, tenant_id=message.tenant_id, message_id=message.wamid)
            return
        await self.ctx.retrying(STAGE, lambda: send_and_wait(self.ready, message.key, ready.to_bytes()))


def register_media(app: faust.App, ctx: StageContext) -> MediaStage:
    """Add the media agent (``wa-resolved`` → ``wa-ready``) to ``app``."""
    source = stage_topic(app, ctx.settings, WA_RESOLVED)
    stage = MediaStage(ctx, stage_topic(app, ctx.settings, WA_READY))

    async def fetch_media(stream: faust.StreamT) -> None:
        # Downloads take a while: many customers' media in flight at once, each customer in order.
        await run_in_lanes(stream, ctx.guarded(STAGE, stage.handle), max_concurrency=256, batch_size=500)

    app.agent(source, name=f"{__name__}.fetch_media", concurrency=1)(fetch_media)
    return stage
