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

The 24-hour window: free text is sent only within 24 hours of the customer's last message (its
Meta timestamp, kept by the conversation). Outside it, nothing is sent and Genesys gets a
``Failed`` receipt (``MessageExpired``) the agent can read; so does any refusal of Meta's no retry
changes (its code mapped by ``transforms.receipts``). Genesys's webhook was answered 2xx long
before: a failed send is reported by a receipt, never by refusing the webhook.

Receipts: Meta's ``delivered`` and ``failed`` statuses of our sends come back through the inbound
pipeline; resolve_conversation tracks them and, for a part of an agent's message, puts a
``ReceiptDue`` on this topic (same key, so it follows the customer's sends), which becomes the
``Delivered`` / ``Failed`` receipt POSTed to Genesys here.

The agent typing marks the customer's last message read with WhatsApp's typing indicator, at
most once per customer every few seconds, best effort.

Not yet here (issue 14, next steps): attachments and structured messages (quick replies, lists,
templates). Such events go to ``error-events`` (``outbound_unsupported``) — kept, counted and
redrivable once built.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
import orjson
from faust.types import EventT
from prometheus_client import Counter
from pydantic import ValidationError

from wabridge.agents import holds
from wabridge.agents.context import StageContext
from wabridge.connectors.genesys import GenesysClient
from wabridge.connectors.meta_graph import Accepted, MetaGraphClient, SendRefused, WhatsAppTokens, text_parts
from wabridge.errors import PermanentError
from wabridge.failures import classify
from wabridge.schemas.genesys import OutboundEvent, OutboundKind, ReasonCode, genesys_time
from wabridge.schemas.records import ReceiptDue
from wabridge.streams.app import stage_topic
from wabridge.streams.lanes import run_in_lanes
from wabridge.streams.topics import AGENT_MESSAGES
from wabridge.tables.conversations import ConversationMapping
from wabridge.tables.outbound import BEGIN_SEND, FINISH_SEND, SendAttempt, SendDone
from wabridge.tenants import Tenant
from wabridge.transforms.receipts import failed_receipt, reason_code, to_open_receipt

log = logging.getLogger(__name__)

STAGE = "outbound"

SENDS = Counter(
    "wabridge_outbound_sends_total", "Agent message parts sent to WhatsApp, by outcome", ["tenant", "outcome"]
)
UNCONFIRMED_RESENDS = Counter(
    "wabridge_outbound_unconfirmed_resends_total",
    "Parts sent again because an earlier attempt's answer was lost with its worker",
    ["tenant"],
)
NOT_SENT = Counter("wabridge_outbound_not_sent_total", "Agent events not sent to WhatsApp, by kind", ["kind"])
RECEIPTS = Counter("wabridge_outbound_receipts_total", "Receipts POSTed to Genesys, by status", ["tenant", "status"])

TYPING = Counter("wabridge_outbound_typing_shown_total", "Typing indicators shown to customers", ["tenant"])
# At most one typing indicator per customer this often (WhatsApp shows one for up to 25 s).
TYPING_EVERY_S = 5.0

# The customer service window (reference: Sending): free-form messages within 24 h of the
# customer's last message, templates only afterwards.
SERVICE_WINDOW_S = 24 * 3600


class Sender:
    """The outbound lanes' handler; one per worker."""

    def __init__(self, ctx: StageContext, genesys: GenesysClient, conversations: faust.Table) -> None:
        self.ctx = ctx
        self.genesys = genesys
        self.conversations = conversations
        self.graph = MetaGraphClient.from_settings(ctx.settings)
        self.tokens = WhatsAppTokens(ctx.redis, ctx.box, ctx.settings)
        # key -> when its typing indicator was last shown (monotonic); pruned to the last seconds.
        self._typing_shown: dict[str, float] = {}

    async def close(self) -> None:
        await self.graph.close()

    async def handle(self, event: EventT) -> None:
        raw = event.value if isinstance(event.value, bytes) else b""
        try:
            value = orjson.loads(raw)
            if isinstance(value, dict) and "receipt_for" in value:
                await self.tell_genesys(ReceiptDue.model_validate(value))
                return
            outbound = OutboundEvent.model_validate(value)
        except (ValidationError, orjson.JSONDecodeError) as exc:
            error = PermanentError(f"not an agent event or a receipt: {exc}".splitlines()[0], reason="invalid_record")
            await self.ctx.route_error(STAGE, event, error)
            return
        if outbound.kind is OutboundKind.EVENT:
            await self.show_typing(outbound)
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
        held = self.conversations.get(outbound.key)
        mapping = ConversationMapping.from_table(held) if held is not None else None
        # A conversation kept before this field existed has only its activity time: later than the
        # customer's message, so a closed window may look open; Meta's 131047 then says so (receipt).
        last_message_at = (mapping.last_customer_message_at or mapping.last_activity_at) if mapping else None
        if last_message_at is None or time.time() - last_message_at > SERVICE_WINDOW_S:
            SENDS.labels(tenant.id, "window_closed").inc()
            since = "never wrote" if last_message_at is None else f"last wrote at {genesys_time(last_message_at)}"
            note = f"Not sent: the customer's 24-hour WhatsApp window is closed ({since}); only a template can be sent."
            await self.tell_failure(outbound, ReasonCode.MESSAGE_EXPIRED, note)
            return
        try:
            phone_number_id = self.phone_number_for(mapping, tenant)
            for part, body in enumerate(text_parts(outbound.text)):
                message = {"to": outbound.customer_id, "type": "text", "text": {"body": body}}
                await self.send_once(tenant, phone_number_id, outbound, part, message)
        except PermanentError as exc:
            SENDS.labels(tenant.id, exc.reason).inc()
            await self.ctx.route_error(STAGE, event, exc, tenant_id=outbound.tenant_id, message_id=outbound.id)
            code = reason_code(exc.code) if isinstance(exc, SendRefused) else ReasonCode.GENERAL_ERROR
            await self.tell_failure(outbound, code, f"Not sent: {exc}")

    async def show_typing(self, outbound: OutboundEvent) -> None:
        """The agent is typing: mark the customer's last message read with the typing indicator, at
        most once per customer every ``TYPING_EVERY_S``. Best effort: it is gone in 25 s anyway, so a
        failure is counted and logged, never retried or held."""
        if outbound.typing is None:
            NOT_SENT.labels("event").inc()
            return
        held = self.conversations.get(outbound.key)
        mapping = ConversationMapping.from_table(held) if held is not None else None
        if mapping is None or mapping.last_customer_message_id is None:
            NOT_SENT.labels("typing_no_message").inc()
            return
        now = time.monotonic()
        if now - self._typing_shown.get(outbound.key, -TYPING_EVERY_S) < TYPING_EVERY_S:
            NOT_SENT.labels("typing_throttled").inc()
            return
        if len(self._typing_shown) >= 10_000:  # only the last few seconds matter
            self._typing_shown = {k: t for k, t in self._typing_shown.items() if now - t < TYPING_EVERY_S}
        self._typing_shown[outbound.key] = now
        wamid = mapping.last_customer_message_id
        try:
            tenant = await self.ctx.tenant(outbound.tenant_id)
            number = self.phone_number_for(mapping, tenant)
            await self.tokens.using(tenant, lambda token: self.graph.show_typing(tenant, number, token, wamid))
        except Exception as exc:  # noqa: BLE001 - classified and logged: a lost indicator harms nothing
            NOT_SENT.labels("typing_failed").inc()
            log.info("outbound: typing indicator for tenant %s not shown: %s", outbound.tenant_id, classify(exc))
            return
        TYPING.labels(outbound.tenant_id).inc()

    def phone_number_for(self, mapping: ConversationMapping | None, tenant: Tenant) -> str:
        """The number the customer wrote to, else the tenant's first; ``PermanentError`` if it has none."""
        if mapping is not None and mapping.phone_number_id:
            return mapping.phone_number_id
        if not tenant.phone_numbers:
            raise PermanentError(f"tenant {tenant.id} has no WhatsApp number", reason="no_phone_number")
        return tenant.phone_numbers[0].phone_number_id

    async def tell_failure(self, outbound: OutboundEvent, code: ReasonCode, note: str) -> None:
        """A ``Failed`` receipt for an agent's message that was not sent, saying why."""
        log.warning(
            "outbound: tenant %s agent message %s not sent (%s): %s", outbound.tenant_id, outbound.id, code.value, note
        )
        body = failed_receipt(
            genesys_message_id=outbound.id,
            customer_id=outbound.customer_id,
            customer_id_type=outbound.customer_id_type,
            code=code,
            message=note,
            at=time.time(),
        )
        await self.post_receipt(outbound.tenant_id, body)

    async def tell_genesys(self, due: ReceiptDue) -> None:
        """The receipt Genesys is due for Meta's ``delivered`` / ``failed`` status of a part."""
        body = to_open_receipt(due.status, genesys_message_id=due.receipt_for)
        if body is None:
            return
        await self.post_receipt(due.status.tenant_id, body)

    async def post_receipt(self, tenant_id: str, body: dict[str, Any]) -> None:
        async def attempt() -> None:
            await self.genesys.send_receipt(await self.ctx.tenant(tenant_id), body)

        await self.ctx.retrying(STAGE, attempt, tenant_id=tenant_id, scope=holds.GENESYS)
        RECEIPTS.labels(tenant_id, str(body["status"])).inc()

    async def send_once(
        self, tenant: Tenant, phone_number_id: str, outbound: OutboundEvent, part: int, message: dict[str, object]
    ) -> None:
        """Send one part unless Meta has it already (a wamid is recorded for it)."""
        attempt = SendAttempt(tenant.id, outbound.id, part, outbound.customer_id)
        prior = await self.ctx.write(STAGE, BEGIN_SEND, attempt)
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
        await self.ctx.write(STAGE, FINISH_SEND, done)
        SENDS.labels(tenant.id, "accepted").inc()


def register_outbound(app: faust.App, ctx: StageContext, genesys: GenesysClient, conversations: faust.Table) -> Sender:
    """Add the outbound agent (``agent-messages`` → WhatsApp, receipts → Genesys) to ``app``."""
    source = stage_topic(app, ctx.settings, AGENT_MESSAGES)
    sender = Sender(ctx, genesys, conversations)

    async def send_to_whatsapp(stream: faust.StreamT) -> None:
        await run_in_lanes(stream, ctx.guarded(STAGE, sender.handle), batch_size=500)

    app.agent(source, name=f"{__name__}.send_to_whatsapp", concurrency=1)(send_to_whatsapp)
    return sender
