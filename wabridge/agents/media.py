"""Step media of the prepare stage: each message with its media stored and presigned.

The work is ``wabridge.media.MediaFetcher.prepare``; this module wires it to the prepare stage.
Messages without media pass straight through (same order, same lane, no I/O). A transient failure
(Meta, S3, PostgreSQL) is retried in the lane, the customer's later messages waiting behind it, so
a message never goes on without its attachment; media that cannot be had travels as ``MediaUnavailable``,
which the agent reads as a note.
"""

from __future__ import annotations

import logging

from wabridge.agents import holds
from wabridge.agents.context import StageContext
from wabridge.errors import PermanentError
from wabridge.media import MediaFetcher
from wabridge.schemas.records import MEDIA_TYPE_BY_WHATSAPP_TYPE, ReadyMessage, ResolvedMessage
from wabridge.streams.types import StageEvent

log = logging.getLogger(__name__)

STEP = "media"


class MediaStep:
    """The media step; one per worker, with one fetcher (made on first use)."""

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
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

    async def prepare(self, resolved: ResolvedMessage, event: StageEvent) -> ReadyMessage | None:
        """``resolved`` with its media stored and presigned; ``None`` when it went to ``error-events``.
        A message without media goes straight on, touching nothing."""
        message = resolved.message
        if message.type not in MEDIA_TYPE_BY_WHATSAPP_TYPE:
            return ReadyMessage(message=message, conversation=resolved.conversation)
        try:
            fetcher = await self.fetcher()
            # Media needs the tenant's WhatsApp token: it waits while Meta refuses that token (a
            # ``whatsapp`` hold); messages without media never get here.
            return await self.ctx.retrying(
                STEP, lambda: fetcher.prepare(resolved), tenant_id=message.tenant_id, scope=holds.WHATSAPP
            )
        except PermanentError as exc:
            await self.ctx.route_error(STEP, event, exc, tenant_id=message.tenant_id, message_id=message.wamid)
            return None
