"""Stage outbound: an agent's messages (``agent-messages``) → the customer on WhatsApp.

Keyed ``tenant:customer`` like every stage, so one customer's messages are sent one after the
other, in the order the agent wrote them, while other customers' go on in their own lanes.

What is sent: ``transforms.outbound.whatsapp_parts`` turns the agent's ``Text`` or ``Structured``
message into WhatsApp messages (text split at 4096 characters, attachments, quick replies and list
pickers as interactive buttons or lists, a ``Notification`` as a template send). Each part is sent
once: ``tables.outbound`` brackets every send in PostgreSQL (attempt before, wamid after), so a
Genesys retry that got past the dedupe table, a redelivery after a crash or a replay never sends a
part Meta already took. A part whose attempt is recorded without a wamid was in flight when a
worker died: it is sent again, counted (``wabridge_outbound_unconfirmed_resends_total``) and logged.
An attachment is fetched from Genesys, kept in media-outbound and uploaded to Meta first
(``agent_media.AgentMedia``).

From the business number the customer wrote to (the conversation's ``phone_number_id``), else the
tenant's first number, paced to the number's throughput (``NumberPacer``: Meta's 130429 pauses the
whole number; 131056, one customer's pair limit, backs off only that customer's lane). A refused
token holds the tenant's WhatsApp work (``whatsapp`` hold); Meta's own trouble is retried in the
lane; a refusal no retry changes routes the event to ``error-events`` with Meta's code.

Where: a customer's phone number goes in ``to``, a BSUID (a customer known only by a WhatsApp
username) in ``recipient`` (``transforms.outbound.whatsapp_address``).

The 24-hour window: free-form messages are sent only within 24 hours of the customer's last
message (its Meta timestamp, kept by the conversation); a template goes at any time. A template is
first checked against the tenant's templates at Meta (``connectors.meta_templates``,
``transforms.templates``): one Meta would refuse (unknown in that language, not approved, the wrong
parameter count, an authentication template to a BSUID) is not sent. A MARKETING template is not
sent to a customer who opted out of marketing messages (Meta's 131050 or a ``user_preferences``
stop, kept by the conversation); utility and authentication templates are. MARKETING templates go
through Meta's Marketing Messages API where the tenant enabled it. What is not sent gets a
``Failed`` receipt the agent can read
(``MessageExpired``, ``RecipientOptedOut``, ``UnsupportedMessage`` naming the content WhatsApp
cannot show, or Meta's refusal mapped by ``transforms.receipts``). Genesys's webhook was answered
2xx long before: a failed send is reported by a receipt, never by refusing the webhook.

Receipts: Meta's ``delivered`` and ``failed`` statuses of our sends come back through the inbound
pipeline; resolve_conversation tracks them and, for a part of an agent's message, puts a
``ReceiptDue`` on this topic (same key, so it follows the customer's sends). Genesys reads
``isFinalReceipt`` as the message's last word, so it gets one receipt per agent message: ``Failed``
as soon as a part fails, ``Delivered`` once every part is delivered, nothing before
(``tables.outbound.fetch_outcome``).

The agent typing marks the customer's last message read with WhatsApp's typing indicator, at
most once per customer every few seconds, best effort.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
import orjson
from prometheus_client import Counter

from wabridge.agent_media import AgentMedia
from wabridge.agents import holds
from wabridge.agents.context import ResendWatch, StageContext
from wabridge.connectors import s3
from wabridge.connectors.attachments import AttachmentFetcher
from wabridge.connectors.genesys import GenesysClient
from wabridge.connectors.meta_graph import Accepted, MetaGraphClient, NumberRateLimited, SendRefused, WhatsAppTokens
from wabridge.connectors.meta_templates import Catalog, TemplateCatalog
from wabridge.errors import PermanentError, metric_reason
from wabridge.failures import classify
from wabridge.schemas.genesys import OutboundEvent, OutboundKind, ReasonCode, genesys_time
from wabridge.schemas.records import ReceiptDue
from wabridge.streams.app import stage_topic
from wabridge.streams.lanes import run_in_lanes
from wabridge.streams.topics import AGENT_MESSAGES
from wabridge.streams.types import StageEvent, StageStream, StageTable
from wabridge.tables.conversations import ConversationMapping
from wabridge.tables.outbound import (
    BEGIN_SEND,
    FINISH_SEND,
    MessageOutcome,
    SendAttempt,
    SendDone,
    fetch_outcome,
    mark_told,
)
from wabridge.tenants import Tenant
from wabridge.transforms.outbound import Part, Unsendable, addressed_by_bsuid, whatsapp_address, whatsapp_parts
from wabridge.transforms.receipts import failed_receipt, reason_code, to_open_receipt
from wabridge.transforms.templates import MARKETING, template_problem

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
TEMPLATE_CHECKS = Counter(
    "wabridge_outbound_template_checks_total", "Agent templates checked against Meta's list, by outcome", ["outcome"]
)
# Meta's template refusals (132000 parameters, 132001 unknown, 132015 paused, 132016 disabled): the
# tenant's template list is read again, so the next check sees what Meta sees.
TEMPLATE_REFUSAL_CODES = frozenset({132000, 132001, 132015, 132016})

PAUSES = Counter(
    "wabridge_outbound_number_pauses_total", "Times a business number's sends paused for Meta's 130429", ["number"]
)
# How long a number's sends pause after 130429 when Meta gives no Retry-After.
NUMBER_PAUSE_S = 1.0

TYPING = Counter("wabridge_outbound_typing_shown_total", "Typing indicators shown to customers", ["tenant"])
# At most one typing indicator per customer this often (WhatsApp shows one for up to 25 s).
TYPING_EVERY_S = 5.0

# The customer service window (reference: Sending): free-form messages within 24 h of the
# customer's last message, templates only afterwards.
SERVICE_WINDOW_S = 24 * 3600


def decode_agent_message(raw: bytes) -> ReceiptDue | OutboundEvent:
    """A record of ``agent-messages``: a receipt Genesys is due, or an agent's event."""
    value = orjson.loads(raw)
    if isinstance(value, dict) and "receipt_for" in value:
        return ReceiptDue.model_validate(value)
    return OutboundEvent.model_validate(value)


class NumberPacer:
    """Each business number's sends, spaced to its throughput (``whatsapp_sends_per_second``), and
    paused as a whole when Meta answers that the number is over it (130429): every customer of
    the number waits, as Meta asks, while other numbers' sends go on. A customer's own pair limit
    (131056) is not here: only that customer's lane backs off."""

    # Sends are spaced for this share of the number's throughput: requests spaced exactly at the
    # limit arrive bunched by the network now and then, and Meta counts them as they arrive.
    HEADROOM = 0.9

    def __init__(self, per_second: float) -> None:
        self._spacing = 1.0 / (per_second * self.HEADROOM)
        self._next: dict[str, float] = {}  # number -> the earliest next send (monotonic)

    async def turn(self, number: str) -> None:
        now = time.monotonic()
        slot = max(now, self._next.get(number, now))
        self._next[number] = slot + self._spacing
        if slot > now:
            await asyncio.sleep(slot - now)

    def pause(self, number: str, seconds: float) -> None:
        now = time.monotonic()
        self._next[number] = max(self._next.get(number, now), now + seconds)
        PAUSES.labels(number).inc()


class Sender:
    """The outbound lanes' handler; one per worker."""

    def __init__(self, ctx: StageContext, genesys: GenesysClient, conversations: StageTable) -> None:
        self.ctx = ctx
        self.genesys = genesys
        self.conversations = conversations
        self.graph = MetaGraphClient.from_settings(ctx.settings)
        self.tokens = WhatsAppTokens(ctx.redis, ctx.box, ctx.settings)
        self.pacer = NumberPacer(ctx.settings.whatsapp_sends_per_second)
        self._storage = s3.client(ctx.settings)
        self._presigner = s3.client(ctx.settings, public=True)
        self._attachments = AttachmentFetcher(ctx.settings)
        self.media = AgentMedia(
            ctx.settings,
            graph=self.graph,
            tokens=self.tokens,
            storage=self._storage,
            presigner=self._presigner,
            fetcher=self._attachments,
        )
        self.templates = TemplateCatalog(ctx.redis, ctx.settings, self.graph, self.tokens)
        # key -> when its typing indicator was last shown (monotonic); pruned to the last seconds.
        self._typing_shown: dict[str, float] = {}

    async def close(self) -> None:
        await self.graph.close()
        await self._attachments.close()
        for client in (self._storage, self._presigner):
            await s3.close(client)

    async def handle(self, event: StageEvent) -> None:
        record = await self.ctx.decoded(STAGE, event, decode_agent_message, "an agent event or a receipt")
        if record is None:
            return
        if isinstance(record, ReceiptDue):
            await self.tell_genesys(record)
            return
        outbound = record
        if outbound.kind is OutboundKind.EVENT:
            await self.show_typing(outbound)
            return
        if outbound.kind not in (OutboundKind.TEXT, OutboundKind.STRUCTURED):
            NOT_SENT.labels(outbound.kind.value.lower()).inc()
            return
        try:
            parts = whatsapp_parts(outbound)
        except Unsendable as exc:
            NOT_SENT.labels("unsupported").inc()
            await self.tell_failure(outbound, exc.code, f"Not sent: {exc}.")
            return
        if not parts:
            NOT_SENT.labels("empty").inc()
            return
        await self.send(event, outbound, parts)

    async def send(self, event: StageEvent, outbound: OutboundEvent, parts: list[Part]) -> None:
        """Send ``parts`` in order, each once, if the customer's window (or a template) allows."""
        tenant = await self.ctx.tenant(outbound.tenant_id)
        # First: a message Meta has whole (a redelivery, a replay) is done, whatever the window or
        # an opt-out says now; telling the agent "not sent" about it would be wrong.
        if await self.already_sent(outbound):
            SENDS.labels(tenant.id, "already_sent").inc()
            log.info("outbound: tenant %s agent message %s was sent already: skipped", tenant.id, outbound.id)
            return
        held = self.conversations.get(outbound.key)
        mapping = ConversationMapping.from_table(held) if held is not None else None
        # A conversation kept before this field existed has only its activity time: later than the
        # customer's message, so a closed window may look open; Meta's 131047 then says so (receipt).
        last_message_at = (mapping.last_customer_message_at or mapping.last_activity_at) if mapping else None
        window_open = last_message_at is not None and time.time() - last_message_at <= SERVICE_WINDOW_S
        if not window_open and not all(part.template for part in parts):
            SENDS.labels(tenant.id, "window_closed").inc()
            since = "never wrote" if last_message_at is None else f"last wrote at {genesys_time(last_message_at)}"
            note = f"Not sent: the customer's 24-hour WhatsApp window is closed ({since}); only a template can be sent."
            await self.tell_failure(outbound, ReasonCode.MESSAGE_EXPIRED, note)
            return
        address = whatsapp_address(outbound.customer_id, mapping.wa_id if mapping else None)
        try:
            phone_number_id = self.phone_number_for(mapping, tenant)
            category = await self.template_category(tenant, phone_number_id, outbound, address)
            if category == "refused":
                return
            if category == MARKETING and mapping is not None and mapping.marketing_opted_out_at:
                SENDS.labels(tenant.id, "opted_out").inc()
                note = (
                    "Not sent: the customer opted out of marketing messages on WhatsApp "
                    f"(since {genesys_time(mapping.marketing_opted_out_at)}); marketing templates are not "
                    "sent to them until they opt in again. Utility templates, and a reply within 24 hours of "
                    "their next message, can be sent."
                )
                await self.tell_failure(outbound, ReasonCode.RECIPIENT_OPTED_OUT, note)
                return
            marketing = category == MARKETING and tenant.config.meta_marketing_messages_api
            for index, part in enumerate(parts):
                await self.send_once(
                    tenant, phone_number_id, outbound, index, part, address, parts=len(parts), marketing=marketing
                )
        except Unsendable as exc:
            SENDS.labels(tenant.id, "unsupported").inc()
            await self.tell_failure(outbound, exc.code, f"Not sent: {exc}.")
        except PermanentError as exc:
            SENDS.labels(tenant.id, metric_reason(exc.reason)).inc()
            await self.ctx.route_error(STAGE, event, exc, tenant_id=outbound.tenant_id, message_id=outbound.id)
            code = reason_code(exc.code) if isinstance(exc, SendRefused) else ReasonCode.GENERAL_ERROR
            if isinstance(exc, SendRefused) and exc.code in TEMPLATE_REFUSAL_CODES:
                # Meta refused a template it was asked for: the number was known (phone_number_id).
                waba_id = tenant.waba_of(phone_number_id)
                if waba_id:
                    await self.templates.forget(tenant.id, waba_id)
            await self.tell_failure(outbound, code, f"Not sent: {exc}")

    async def already_sent(self, outbound: OutboundEvent) -> bool:
        async def outcome() -> MessageOutcome:
            return await fetch_outcome(await self.ctx.pool(), outbound.tenant_id, outbound.id)

        return (await self.ctx.retrying(STAGE, outcome, tenant_id=outbound.tenant_id)).all_sent

    async def template_category(
        self, tenant: Tenant, phone_number_id: str, outbound: OutboundEvent, address: dict[str, str]
    ) -> str | None:
        """For a template: its category at Meta (``None`` when the tenant's list cannot be read), or
        ``"refused"`` once the agent has been told why Meta would refuse it. None for other messages."""
        template = outbound.template
        if template is None:
            return None
        waba_id = tenant.waba_of(phone_number_id)

        async def read() -> Catalog | None:
            return await self.templates.catalog(await self.ctx.tenant(tenant.id), waba_id)

        catalog = await self.ctx.retrying(STAGE, read, tenant_id=tenant.id, scope=holds.WHATSAPP)
        if catalog is None:
            TEMPLATE_CHECKS.labels("unchecked").inc()
            return None
        known = catalog.get(template.name, template.language)
        problem = template_problem(
            known, template, to_bsuid=addressed_by_bsuid(address), others=catalog.languages_of(template.name)
        )
        if problem is not None:
            TEMPLATE_CHECKS.labels("refused").inc()
            SENDS.labels(tenant.id, "template_refused").inc()
            code, note = problem
            await self.tell_failure(outbound, code, f"Not sent: {note}.")
            return "refused"
        TEMPLATE_CHECKS.labels("passed").inc()
        return known.category if known else None

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
        """The receipt Genesys is due for Meta's ``delivered`` / ``failed`` status of a part: the
        agent's message's one final receipt, once its outcome is known across all its parts."""
        body = to_open_receipt(due.status, genesys_message_id=due.receipt_for)
        if body is None:
            return
        tenant_id, message_id = due.status.tenant_id, due.receipt_for

        async def outcome() -> MessageOutcome:
            return await fetch_outcome(await self.ctx.pool(), tenant_id, message_id)

        found = await self.ctx.retrying(STAGE, outcome, tenant_id=tenant_id)
        if found.told or not found.settled:
            NOT_SENT.labels("receipt_not_final" if not found.told else "receipt_told").inc()
            return
        if found.failed and body["status"] != "Failed":
            return  # another part failed: that part's own status carries the reason
        await self.post_receipt(tenant_id, body)

        async def told() -> None:
            await mark_told(await self.ctx.pool(), tenant_id, message_id)

        await self.ctx.retrying(STAGE, told, tenant_id=tenant_id)

    async def post_receipt(self, tenant_id: str, body: dict[str, Any]) -> None:
        async def attempt() -> None:
            await self.genesys.send_receipt(await self.ctx.tenant(tenant_id), body)

        await self.ctx.retrying(STAGE, attempt, tenant_id=tenant_id, scope=holds.GENESYS)
        RECEIPTS.labels(tenant_id, str(body["status"])).inc()

    async def send_once(
        self,
        tenant: Tenant,
        phone_number_id: str,
        outbound: OutboundEvent,
        index: int,
        part: Part,
        address: dict[str, str],
        *,
        parts: int = 1,
        marketing: bool = False,
    ) -> None:
        """Send one part to ``address`` unless Meta has it already (a wamid is recorded for it)."""
        attempt = SendAttempt(tenant.id, outbound.id, index, outbound.customer_id, parts)
        prior = await self.ctx.write(STAGE, BEGIN_SEND, attempt)
        if prior.wamid is not None:
            SENDS.labels(tenant.id, "already_sent").inc()
            log.debug("outbound: part %d of %s (tenant %s) was sent already", index, outbound.id, tenant.id)
            return
        if prior.attempts > 0:
            UNCONFIRMED_RESENDS.labels(tenant.id).inc()
            log.warning(
                "outbound: tenant %s agent message %s part %d: an earlier attempt's answer was lost with its "
                "worker; sending again",
                tenant.id, outbound.id, index,
            )  # fmt: skip
        body = part.message
        if part.attachment is not None:

            async def attach() -> dict[str, Any]:
                return await self.media.attach(await self.ctx.tenant(tenant.id), phone_number_id, outbound, index, part)

            body = await self.ctx.retrying(STAGE, attach, tenant_id=tenant.id, scope=holds.WHATSAPP)
        message = {**address, **body}

        async def send() -> Accepted:
            # The tenant is read again on every attempt: an operator's fix (a new token) is seen.
            current = await self.ctx.tenant(tenant.id)
            await self.pacer.turn(phone_number_id)
            try:
                return await self.tokens.using(
                    current,
                    lambda token: self.graph.send_message(
                        current, phone_number_id, token, message, marketing=marketing
                    ),
                )
            except NumberRateLimited as exc:
                self.pacer.pause(phone_number_id, exc.retry_after or NUMBER_PAUSE_S)
                raise

        watched = ResendWatch(STAGE, tenant.id, f"{outbound.id} part {index}")(send)
        accepted = await self.ctx.retrying(STAGE, watched, tenant_id=tenant.id, scope=holds.WHATSAPP)
        done = SendDone(tenant.id, outbound.id, index, outbound.customer_id, accepted.wamid, part.preview)
        await self.ctx.write(STAGE, FINISH_SEND, done)
        SENDS.labels(tenant.id, "accepted").inc()


def register_outbound(app: faust.App, ctx: StageContext, genesys: GenesysClient, conversations: StageTable) -> Sender:
    """Add the outbound agent (``agent-messages`` → WhatsApp, receipts → Genesys) to ``app``."""
    source = stage_topic(app, ctx.settings, AGENT_MESSAGES)
    sender = Sender(ctx, genesys, conversations)

    async def send_to_whatsapp(stream: StageStream) -> None:
        await run_in_lanes(stream, ctx.guarded(STAGE, sender.handle), batch_size=500)

    app.agent(source, name=f"{__name__}.send_to_whatsapp", concurrency=1)(send_to_whatsapp)
    return sender
