"""Stage deliver: ``wa-ready`` → Genesys Open Messaging, once per message, in order per customer.

Each ``ReadyMessage`` becomes its ``/inbound/open/message`` bodies (``transforms.to_open_messages``;
a button or list choice answering a known agent message becomes a structured response). Every POST
is bracketed in PostgreSQL (``tables.delivery``): before it, the attempt is recorded and a message
that already has a Genesys id is skipped, so a replay or a redelivery after a crash never POSTs a
wamid again after a 2xx; after it, the Genesys message id and ``sent`` are stored, and the
conversation id Genesys prefetched goes to the mapping.

A worker killed while a POST is in flight cannot know whether Genesys took it (Genesys offers no
idempotency key): the next attempt finds a recorded attempt without a Genesys id and sends again —
at least once, never lost — counting it in ``wabridge_deliver_unconfirmed_resends_total`` and
logging the wamid, so a duplicate at the agent is never silent.

Failures: the client raises ``TransientError`` for 429 (with Retry-After; that tenant's other
requests wait too), 5xx, timeouts and connection errors — retried here with jittered backoff, the
customer's later messages waiting behind; ``PermanentError`` for a refused message — tracking
``failed`` with Genesys's reason, the record on ``error-events``, a metric — and the customer's
next message goes on.

Concurrency: the lanes (``streams.lanes``) run different customers at once and one customer's
messages strictly one after another. A tenant that Genesys throttles parks its lanes on its own
gate without holding connections; other tenants' lanes keep the pool. ``MAX_PENDING`` bounds how
far a throttled tenant's backlog can grow inside one partition before the partition pauses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, TypeVar

import faust
import orjson
from prometheus_client import Counter, Histogram

from wabridge.agents.context import ResendWatch, StageContext
from wabridge.connectors import s3
from wabridge.connectors.genesys import DeliveryResult, GenesysClient
from wabridge.errors import PermanentError, metric_reason
from wabridge.masking import mask_customer_id
from wabridge.media import presign
from wabridge.schemas.records import ReadyMessage
from wabridge.schemas.status import MessageStatus
from wabridge.streams.app import stage_topic
from wabridge.streams.lanes import run_in_lanes
from wabridge.streams.topics import WA_READY
from wabridge.streams.types import StageEvent, StageStream, StageTable
from wabridge.tables.conversations import ConversationMapping
from wabridge.tables.delivery import (
    BEGIN_DELIVERY,
    FINISH_DELIVERY,
    SET_GENESYS_CONVERSATION,
    Delivered,
    DeliveryAttempt,
    GenesysConversation,
)
from wabridge.tables.mirror import WriteKind
from wabridge.tables.tracking import TRACK, Tracked
from wabridge.tenants import Tenant
from wabridge.transforms.inbound import to_open_messages, to_structured_response

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

STAGE = "deliver"

# Events taken and not yet acked, across the worker's partitions of wa-ready. A throttled tenant's
# messages wait here while other tenants' flow; at the cap the partitions pause (back-pressure).
MAX_PENDING = 50_000
# Lanes waiting on a throttled tenant hold a slot but no connection, so slots are plentiful; the
# connection pool and the client's per-tenant bound limit the requests actually in flight.
MAX_CONCURRENCY = 4_096

DELIVERED = Counter("wabridge_deliver_messages_total", "Genesys POSTs by tenant and outcome", ["tenant", "outcome"])
UNCONFIRMED_RESENDS = Counter(
    "wabridge_deliver_unconfirmed_resends_total",
    "Messages sent again because an earlier attempt's answer was lost with its worker",
    ["tenant"],
)
END_TO_END = Histogram(
    "wabridge_deliver_end_to_end_seconds",
    "From the edge receiving the webhook to Genesys accepting the message",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0),
)


class Deliverer:
    """The deliver lanes' handler; one per worker."""

    def __init__(self, ctx: StageContext, client: GenesysClient, conversations: StageTable) -> None:
        self.ctx = ctx
        self.client = client
        self.conversations = conversations
        self._presigner = s3.client(ctx.settings, public=True)
        self._url_expiry = timedelta(seconds=ctx.settings.media_url_expiry_s)

    async def handle(self, event: StageEvent) -> None:
        ready = await self.ctx.decoded(STAGE, event, ReadyMessage.from_bytes, "a ReadyMessage")
        if ready is None:
            return
        message = ready.message
        try:
            tenant = await self.ctx.tenant(message.tenant_id)
            for index, (endpoint, body) in enumerate(self.bodies(ready)):
                if not await self.deliver_once(tenant, ready, endpoint, body, index):
                    break
        except PermanentError as exc:
            await self.track_failure(ready, exc)
            await self.ctx.route_error(STAGE, event, exc, tenant_id=message.tenant_id, message_id=message.wamid)

    async def with_fresh_links(self, ready: ReadyMessage) -> ReadyMessage:
        """The message with each stored attachment signed now: its link's expiry counts from this POST."""
        if not any(a.key for a in ready.attachments):
            return ready
        bucket = self.ctx.settings.s3_bucket_media_inbound
        attachments = []
        for attachment in ready.attachments:
            if attachment.key:
                url = await presign(self._presigner, bucket, attachment.key, self._url_expiry)
                attachment = attachment.model_copy(update={"url": url})
            attachments.append(attachment)
        return ready.model_copy(update={"attachments": tuple(attachments)})

    def bodies(self, ready: ReadyMessage) -> list[tuple[str, dict[str, Any]]]:
        message = ready.message
        originating = ready.conversation.originating_message_id(message)
        if originating:
            structured = to_structured_response(message, originating_message_id=originating)
            if structured is not None:
                return [("structured/response", structured)]
        attributes = {"conversationId": str(ready.conversation.conversation_id)}
        bodies = to_open_messages(
            message,
            attachments=ready.attachments,
            media_unavailable=ready.media_unavailable,
            custom_attributes=attributes,
            quoted=ready.conversation.quoted,
        )
        return [("message", body) for body in bodies]

    async def deliver_once(
        self, tenant: Tenant, ready: ReadyMessage, endpoint: str, body: dict[str, Any], index: int
    ) -> bool:
        """POST ``body`` (the ``index``-th of ``ready``'s) unless Genesys has it already; False when an
        earlier attempt failed for good. Each attempt signs the attachment links anew."""
        message = ready.message
        post_id = str(body["channel"].get("messageId") or message.wamid)
        begun = DeliveryAttempt(tenant_id=tenant.id, wamid=post_id, customer_id=message.customer_id)
        prior = await self.write(BEGIN_DELIVERY, begun)
        if prior.genesys_message_id is not None:
            DELIVERED.labels(tenant.id, "already_delivered").inc()
            log.debug("deliver: %s of tenant %s is at Genesys already; not sent again", post_id, tenant.id)
            return True
        if prior.status == MessageStatus.FAILED.value:
            DELIVERED.labels(tenant.id, "already_failed").inc()
            return False
        if prior.attempts > 0:
            UNCONFIRMED_RESENDS.labels(tenant.id).inc()
            log.warning(
                "deliver: tenant %s message %s: an earlier attempt's answer was lost with its worker; sending again"
                " (the agent may see it twice)",
                tenant.id,
                post_id,
            )

        async def attempt() -> DeliveryResult:
            # The tenant is read again on every attempt: an operator's fix (new credentials) is seen.
            current = await self.ctx.tenant(tenant.id)
            signed = body if not ready.attachments else self.bodies(await self.with_fresh_links(ready))[index][1]
            return await self.post(current, endpoint, signed)

        result = await self.ctx.retrying(STAGE, ResendWatch(STAGE, tenant.id, post_id)(attempt), tenant_id=tenant.id)
        DELIVERED.labels(tenant.id, "delivered").inc()
        END_TO_END.observe(max(0.0, time.time() - message.received_at))
        if result.genesys_message_id is not None:
            delivered = Delivered(tenant_id=tenant.id, wamid=post_id, genesys_message_id=result.genesys_message_id)
            await self.write(FINISH_DELIVERY, delivered)
        if result.conversation_id and result.conversation_id != ready.conversation.genesys_conversation_id:
            await self.remember_conversation(ready, result.conversation_id)
        return True

    async def post(self, tenant: Tenant, endpoint: str, body: Mapping[str, Any]) -> DeliveryResult:
        if endpoint == "structured/response":
            return await self.client.send_structured_response(tenant, body)
        return await self.client.send_inbound_message(tenant, body)

    async def remember_conversation(self, ready: ReadyMessage, genesys_conversation_id: str) -> None:
        message = ready.message
        held = self.conversations.get(message.key)
        if held is not None:
            mapping = ConversationMapping.from_table(held)
            if mapping.genesys_conversation_id == genesys_conversation_id:
                return
            updated = mapping.model_copy(update={"genesys_conversation_id": genesys_conversation_id})
            self.conversations[message.key] = updated.to_table()
            await self.ctx.cache.store(updated)
        await self.write(
            SET_GENESYS_CONVERSATION,
            GenesysConversation(message.tenant_id, message.customer_id, genesys_conversation_id),
        )
        log.info(
            "tenant %s customer %s: Genesys conversation %s",
            message.tenant_id,
            mask_customer_id(message.customer_id),
            genesys_conversation_id,
        )

    async def track_failure(self, ready: ReadyMessage, error: PermanentError) -> None:
        message = ready.message
        DELIVERED.labels(message.tenant_id, metric_reason(error.reason)).inc()
        reason = orjson.dumps({"reason": error.reason, "message": str(error)}).decode()
        tracked = Tracked.of_inbound(message, MessageStatus.FAILED, ready.conversation.conversation_id, error=reason)
        await self.write(TRACK, tracked)

    async def write(self, kind: WriteKind[Item, Result], item: Item) -> Result:
        return await self.ctx.write(STAGE, kind, item)


def register_deliver(app: faust.App, ctx: StageContext, client: GenesysClient, conversations: StageTable) -> None:
    """Add the deliver agent (``wa-ready`` → Genesys) to ``app``."""
    source = stage_topic(app, ctx.settings, WA_READY)
    deliverer = Deliverer(ctx, client, conversations)

    async def deliver_to_genesys(stream: StageStream) -> None:
        await run_in_lanes(
            stream,
            ctx.guarded(STAGE, deliverer.handle),
            max_pending=MAX_PENDING,
            max_concurrency=MAX_CONCURRENCY,
            batch_size=500,
        )

    app.agent(source, name=f"{__name__}.deliver_to_genesys", concurrency=1)(deliver_to_genesys)
