"""WhatsApp status of an agent's message -> Genesys ``OpenInboundNormalizedReceipt`` body. Pure.

Mapping from ``reference/genesys-open-messaging.md``: delivered -> Delivered; failed -> Failed with
``reasons[{code, message}]`` by Meta error code; sent, read and played -> no receipt (the endpoint
documents only Delivered and Failed, and has no Read: they stay in our own tracking).

The other direction (Genesys's outbound webhook, ``OpenNormalizedMessage``) is parsed by
``schemas.genesys.parse_outbound_webhook``, re-exported here.
"""

from __future__ import annotations

from typing import Any

from wabridge.schemas.genesys import (
    IdType,
    OutboundEvent,
    OutboundWebhookError,
    ReasonCode,
    ReceiptStatus,
    genesys_time,
    parse_outbound_webhook,
)
from wabridge.schemas.meta import is_bsuid
from wabridge.schemas.records import MetaError, StatusUpdate
from wabridge.schemas.status import MessageStatus

__all__ = [
    "REASON_BY_META_CODE",
    "OutboundEvent",
    "OutboundWebhookError",
    "failed_receipt",
    "parse_outbound_webhook",
    "reason_code",
    "to_open_receipt",
]

# Meta error code -> Genesys reason code. 130429 / 131056 mean "rate limited after our own retries":
# the sending side retries them first and reports Failed only when it gives up.
REASON_BY_META_CODE: dict[int, ReasonCode] = {
    131047: ReasonCode.MESSAGE_EXPIRED,
    130429: ReasonCode.RATE_LIMITED,
    131056: ReasonCode.RATE_LIMITED,
    131026: ReasonCode.INVALID_DESTINATION,
    131053: ReasonCode.MEDIA_TYPE_NOT_ALLOWED,
    131051: ReasonCode.UNSUPPORTED_MESSAGE,
    131050: ReasonCode.RECIPIENT_OPTED_OUT,
}


def reason_code(meta_code: int | None) -> ReasonCode:
    """The Genesys reason for a Meta error code; ``GeneralError`` for any other (or none)."""
    if meta_code is None:
        return ReasonCode.GENERAL_ERROR
    return REASON_BY_META_CODE.get(meta_code, ReasonCode.GENERAL_ERROR)


def _reason(error: MetaError) -> dict[str, str]:
    words = error.title or error.message or "failed"
    message = f"WhatsApp error {error.code}: {words}"
    if error.details and error.details != words:
        message += f" ({error.details})"
    return {"code": reason_code(error.code).value, "message": message}


def to_open_receipt(
    status: StatusUpdate,
    *,
    genesys_message_id: str,
    customer_id_type: IdType | None = None,
) -> dict[str, Any] | None:
    """The ``/inbound/open/receipt`` body for ``status`` of the agent's message ``genesys_message_id``.

    None for statuses Genesys is not told about (sent, read, played). ``channel.to`` is the customer
    as Genesys knows them, by their one key (a phone number: Phone; a BSUID: Opaque), whichever of
    their identifiers Meta's status names; ``customer_id_type`` overrides when the caller knows how
    the conversation was opened.
    """
    if status.status is MessageStatus.DELIVERED:
        receipt_status = ReceiptStatus.DELIVERED
    elif status.status is MessageStatus.FAILED:
        receipt_status = ReceiptStatus.FAILED
    else:
        return None
    kind = customer_id_type or (IdType.OPAQUE if is_bsuid(status.customer_id) else IdType.PHONE)
    to = {"id": status.customer_id, "idType": kind.value}
    body: dict[str, Any] = {
        "id": genesys_message_id,
        "channel": {"to": to, "time": genesys_time(status.timestamp)},
        "status": receipt_status.value,
        "direction": "Outbound",
        "isFinalReceipt": True,
    }
    if receipt_status is ReceiptStatus.FAILED:
        reasons = [_reason(error) for error in status.errors]
        body["reasons"] = reasons or [
            {"code": ReasonCode.GENERAL_ERROR.value, "message": "WhatsApp reported the message as failed"}
        ]
    return body


def failed_receipt(
    *,
    genesys_message_id: str,
    customer_id: str,
    customer_id_type: IdType | str | None,
    code: ReasonCode,
    message: str,
    at: float,
) -> dict[str, Any]:
    """A ``Failed`` receipt for an agent's message this bridge could not send (the customer's
    window closed, Meta refused it at once): the agent reads ``message``."""
    return {
        "id": genesys_message_id,
        "channel": {
            "to": {"id": customer_id, "idType": str(customer_id_type or IdType.PHONE.value)},
            "time": genesys_time(at),
        },
        "status": ReceiptStatus.FAILED.value,
        "direction": "Outbound",
        "isFinalReceipt": True,
        "reasons": [{"code": code.value, "message": message[:500]}],
    }
