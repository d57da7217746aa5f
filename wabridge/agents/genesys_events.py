"""Stage genesys_events: Genesys's outbound webhook events (``genesys-outbound``), consumed.

The edge queues each signed Genesys POST; the bridge puts it on ``genesys-outbound`` keyed by the
customer (``channel.to.id``). Here:

* ``Receipt`` events move the tracking of the message they name forward (``delivered``, or
  ``failed`` with Genesys's reasons): an inbound message by its wamid (``channel.messageId``) or
  by the Genesys id we stored when delivering it; an agent message by its Genesys id.
* agent messages (``Text``, ``Structured``) and ``Event`` (typing) go to ``agent-messages``,
  typed (``OutboundEvent``), for the outbound (WhatsApp) direction — recorded, never dropped.

Genesys retries a webhook up to five times, so events are deduplicated per customer on their id
(and status, for receipts) in the changelog-backed table ``genesys-seen``.
"""

from __future__ import annotations

import logging

import faust
import orjson
from prometheus_client import Counter

from wabridge.agents.context import SeenIds, StageContext, send_and_wait
from wabridge.errors import PermanentError
from wabridge.schemas.genesys import OutboundEvent, OutboundKind, parse_outbound_webhook
from wabridge.streams.app import stage_topic
from wabridge.streams.lanes import run_in_lanes
from wabridge.streams.topics import AGENT_MESSAGES, GENESYS_OUTBOUND
from wabridge.streams.types import StageEvent, StageStream
from wabridge.tables.delivery import APPLY_RECEIPT, ReceiptUpdate

log = logging.getLogger(__name__)

STAGE = "genesys_events"
SEEN_TABLE = "genesys-seen"
SEEN_PER_CUSTOMER = 500

# Genesys receipt status -> our tracking status (Read does not exist there; Published/Removed are
# not delivery facts and are only counted).
_RECEIPT_STATUS: dict[str, str] = {"Delivered": "delivered", "Failed": "failed", "Sent": "sent"}

EVENTS = Counter("wabridge_genesys_events_total", "Genesys outbound webhook events consumed", ["kind", "outcome"])


def decode_event(raw: bytes) -> OutboundEvent:
    """The bridge's ``{v, tenant_id, customer_id, received_at, event}`` record, parsed."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise PermanentError(f"record is not JSON: {exc}", reason="invalid_record") from exc
    if not isinstance(record, dict) or record.get("v") != 1 or "event" not in record or "tenant_id" not in record:
        raise PermanentError("not a genesys-outbound record (v 1 with tenant_id and event)", reason="invalid_record")
    return parse_outbound_webhook(record["event"], tenant_id=str(record["tenant_id"]))


def dedupe_id(event: OutboundEvent) -> str:
    return f"{event.id}:{event.receipt_status}" if event.kind is OutboundKind.RECEIPT else event.id


class GenesysEvents:
    """The genesys_events lanes' handler; one per worker."""

    def __init__(self, app: faust.App, ctx: StageContext) -> None:
        self.ctx = ctx
        self.source = stage_topic(app, ctx.settings, GENESYS_OUTBOUND)
        self.agent_messages = stage_topic(app, ctx.settings, AGENT_MESSAGES)
        self.seen = SeenIds(
            app, SEEN_TABLE, help="Ids of Genesys events already consumed, per customer", keep=SEEN_PER_CUSTOMER
        )

    async def handle(self, event: StageEvent) -> None:
        outbound = await self.ctx.decoded(STAGE, event, decode_event, "a genesys-outbound record")
        if outbound is None:
            return
        key = outbound.key
        record_id = dedupe_id(outbound)
        if self.seen.seen(key, record_id):
            EVENTS.labels(outbound.kind.value.lower(), "duplicate").inc()
            return
        if outbound.kind is OutboundKind.RECEIPT:
            await self.apply_receipt(outbound)
        else:
            await self.ctx.retrying(STAGE, lambda: send_and_wait(self.agent_messages, key, outbound.to_bytes()))
            EVENTS.labels(outbound.kind.value.lower(), "recorded").inc()
        self.seen.remember(key, record_id)

    async def apply_receipt(self, event: OutboundEvent) -> None:
        status = _RECEIPT_STATUS.get(event.receipt_status or "")
        if status is None:
            EVENTS.labels("receipt", f"ignored_{event.receipt_status}").inc()
            log.info("genesys receipt %s of tenant %s: status %s not tracked", event.id, event.tenant_id, status)
            return
        reasons = [reason.model_dump() for reason in event.reasons]
        update = ReceiptUpdate(
            tenant_id=event.tenant_id,
            message_id=event.channel_message_id,
            genesys_message_id=event.id,
            status=status,
            error=orjson.dumps({"genesys_reasons": reasons}).decode() if reasons else None,
        )
        found = await self.ctx.write(STAGE, APPLY_RECEIPT, update)
        EVENTS.labels("receipt", status if found else "unknown_message").inc()
        if not found:
            log.warning(
                "genesys receipt %s (%s) of tenant %s names no tracked message (messageId %s)",
                event.id,
                event.receipt_status,
                event.tenant_id,
                event.channel_message_id,
            )


def register_genesys_events(app: faust.App, ctx: StageContext) -> GenesysEvents:
    """Add the genesys_events agent and its dedupe table to ``app``; returns its handler."""
    handler = GenesysEvents(app, ctx)

    async def genesys_events(stream: StageStream) -> None:
        await run_in_lanes(stream, ctx.guarded(STAGE, handler.handle), batch_size=500)

    app.agent(handler.source, name=f"{__name__}.genesys_events", concurrency=1)(genesys_events)
    return handler
