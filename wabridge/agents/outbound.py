"""Stage outbound: an agent's messages (``agent-messages``) → the customer on WhatsApp.

Keyed ``tenant:customer`` like every stage, so one customer's messages are sent one after the
other, in the order the agent wrote them, while other customers' go on in their own lanes.

An agent ``Text`` is sent as WhatsApp text, split at WhatsApp's 4096 characters
(``meta_graph.text_parts``), each part once: ``tables.outbound`` brackets every send in
PostgreSQL (attempt before, wamid after), so a Genesys retry that got past the dedupe table, a
redelivery after a crash or a replay never sends a part Meta already took. A part whose attempt
is recorded without a wamid was in flight when a worker died: it is sent again, counted
(``wabridge_outbound_unconfirmed_resends_total``) and logged with its Genesys id.

From the business number the customer wrote to (the conversation's ``phone_number_id``), else
the tenant's first number. A refused token holds the tenant's WhatsApp work (``whatsapp`` hold);
throughput and Meta's own trouble are retried in the lane; a refusal no retry changes routes the
event to ``error-events`` with Meta's code.

Not yet here (issue 14, next steps): attachments, structured messages (quick replies, lists,
templates), typing, the 24-hour window check before sending and the receipts Genesys gets for
Meta's statuses. Such events go to ``error-events`` (``outbound_unsupported``) — kept, counted and
redrivable once built — and typing events are counted and not sent.
"""

from __future__ import annotations

import logging
from typing import TypeVar

import faust
import orjson
from faust.types import EventT
from prometheus_client import Counter
from pydantic import ValidationError

from wabridge.agents import holds
from wabridge.agents.context import StageContext
from wabridge.connectors.meta_graph import Accepted, MetaGraphClient, WhatsAppTokens, text_parts
from wabridge.errors import PermanentError
from wabridge.schemas.genesys import OutboundEvent, OutboundKind
from wabridge.streams.app import stage_topic
from wabridge.streams.lanes import run_in_lanes
from wabridge.streams.topics import AGENT_MESSAGES
from wabridge.tables.conversations import ConversationMapping
from wabridge.tables.mirror import WriteKind
from wabridge.tables.outbound import BEGIN_SEND, FINISH_SEND, SendAttempt, SendDone
from wabridge.tenants import Tenant

log = logging.getLogger(__name__)

STAGE = "outbound"

Item = TypeVar("Item")
Result = TypeVar("Result")

SENDS = Counter(
    "wabridge_outbound_sends_total", "Agent message parts sent to WhatsApp, by outcome", ["tenant", "outcome"]
)
UNCONFIRMED_RESENDS = Counter(
    "wabridge_outbound_unconfirmed_resends_total",
    "Parts sent again because an earlier attempt's answer was lost with its worker",
    ["tenant"],
)
NOT_SENT = Counter("wabridge_outbound_not_sent_total", "Agent events not sent to WhatsApp, by kind", ["kind"])


class Sender:
    """The outbound lanes' handler; one per worker."""

    def __init__(self, ctx: StageContext, conversations: faust.Table) -> None:
        self.ctx = ctx
        self.conversations = conversations
        self.graph = MetaGraphClient.from_settings(ctx.settings)
        self.tokens = WhatsAppTokens(ctx.redis, ctx.box, ctx.settings)

    async def close(self) -> None:
        await self.graph.close()

    async def handle(self, event: EventT) -> None:
        raw = event.value if isinstance(event.value, bytes) else b""
        try:
            outbound = OutboundEvent.from_bytes(raw)
        except (ValidationError, orjson.JSONDecodeError) as exc:
            error = PermanentError(f"not an OutboundEvent: {exc}".splitlines()[0], reason="invalid_record")
            await self.ctx.route_error(STAGE, event, error)
            return
        if outbound.kind is OutboundKind.EVENT:
            NOT_SENT.labels("event").inc()
            return
        if outbound.kind is not OutboundKind.TEXT or outbound.attachments:
            what = "attachments" if outbound.kind is OutboundKind.TEXT else outbound.kind.value
            error = PermanentError(f"agent {what} cannot be sent to WhatsApp yet", reason="outbound_unsupported")
            await self.ctx.route_error(STAGE, event, error, tenant_id=outbound.tenant_id, message_id=outbound.id)
            return
        if not outbound.text:
            NOT_SENT.labels("empty_text").inc()
            return
        tenant = await self.ctx.tenant(outbound.tenant_id)
        phone_number_id = self.phone_number_for(outbound, tenant)
        try:
            for part, body in enumerate(text_parts(outbound.text)):
                message = {"to": outbound.customer_id, "type": "text", "text": {"body": body}}
                await self.send_once(tenant, phone_number_id, outbound, part, message)
        except PermanentError as exc:
            SENDS.labels(tenant.id, exc.reason).inc()
            await self.ctx.route_error(STAGE, event, exc, tenant_id=outbound.tenant_id, message_id=outbound.id)

    def phone_number_for(self, outbound: OutboundEvent, tenant: Tenant) -> str:
        """The number the customer wrote to, else the tenant's first; ``PermanentError`` if it has none."""
        held = self.conversations.get(outbound.key)
        if held is not None:
            mapping = ConversationMapping.from_table(held)
            if mapping.phone_number_id:
                return mapping.phone_number_id
        if not tenant.phone_numbers:
            raise PermanentError(f"tenant {tenant.id} has no WhatsApp number", reason="no_phone_number")
        return tenant.phone_numbers[0].phone_number_id

    async def send_once(
        self, tenant: Tenant, phone_number_id: str, outbound: OutboundEvent, part: int, message: dict[str, object]
    ) -> None:
        """Send one part unless Meta has it already (a wamid is recorded for it)."""
        attempt = SendAttempt(tenant.id, outbound.id, part, outbound.customer_id)
        prior = await self.ctx.retrying(STAGE, lambda: self._write(BEGIN_SEND, attempt))
        if prior.wamid is not None:
            SENDS.labels(tenant.id, "already_sent").inc()
            log.debug("outbound: part %d of %s (tenant %s) was sent already", part, outbound.id, tenant.id)
            return
        if prior.attempts > 0:
            UNCONFIRMED_RESENDS.labels(tenant.id).inc()
            log.warning(
                "outbound: tenant %s agent message %s part %d: an earlier attempt's answer was lost with its "
                "worker; sending again",
                tenant.id, outbound.id, part,
            )  # fmt: skip

        async def send() -> Accepted:
            # The tenant is read again on every attempt: an operator's fix (a new token) is seen.
            current = await self.ctx.tenant(tenant.id)
            return await self.tokens.using(
                current, lambda token: self.graph.send_message(current, phone_number_id, token, message)
            )

        accepted = await self.ctx.retrying(STAGE, send, tenant_id=tenant.id, scope=holds.WHATSAPP)
        done = SendDone(tenant.id, outbound.id, part, outbound.customer_id, accepted.wamid)
        await self.ctx.retrying(STAGE, lambda: self._write(FINISH_SEND, done))
        SENDS.labels(tenant.id, "accepted").inc()

    async def _write(self, kind: WriteKind[Item, Result], item: Item) -> Result:
        return await (await self.ctx.sink()).write(kind, item)


def register_outbound(app: faust.App, ctx: StageContext, conversations: faust.Table) -> Sender:
    """Add the outbound agent (``agent-messages`` → WhatsApp) to ``app``."""
    source = stage_topic(app, ctx.settings, AGENT_MESSAGES)
    sender = Sender(ctx, conversations)

    async def send_to_whatsapp(stream: faust.StreamT) -> None:
        await run_in_lanes(stream, ctx.guarded(STAGE, sender.handle), batch_size=500)

    app.agent(source, name=f"{__name__}.send_to_whatsapp", concurrency=1)(send_to_whatsapp)
    return sender
