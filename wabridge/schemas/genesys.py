"""Genesys Cloud Open Messaging: the enums we send, and the outbound webhook (agent -> customer).

The enums are those of the official SDK's models (``purecloudplatformclientv2``); unit tests check
our payloads against those models. ``parse_outbound_webhook`` turns Genesys's ``OpenNormalizedMessage``
POST into an ``OutboundEvent`` record keyed by the customer (``channel.to.id``), for the
``genesys-outbound`` topic.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wabridge.errors import PermanentError
from wabridge.schemas.records import SCHEMA_VERSION, Record


class IdType(StrEnum):
    """``channel.from.idType`` / ``channel.to.idType``."""

    PHONE = "Phone"
    EMAIL = "Email"
    OPAQUE = "Opaque"


class ReceiptStatus(StrEnum):
    """``OpenInboundNormalizedReceipt.status``: documented for the endpoint are Delivered and Failed."""

    SENT = "Sent"
    DELIVERED = "Delivered"
    FAILED = "Failed"
    PUBLISHED = "Published"
    REMOVED = "Removed"


class ReasonCode(StrEnum):
    """``reasons[].code`` of a Failed receipt."""

    MESSAGE_EXPIRED = "MessageExpired"
    RATE_LIMITED = "RateLimited"
    MESSAGE_NOT_ALLOWED = "MessageNotAllowed"
    GENERAL_ERROR = "GeneralError"
    UNSUPPORTED_MESSAGE = "UnsupportedMessage"
    UNKNOWN_MESSAGE = "UnknownMessage"
    INVALID_MESSAGE_STRUCTURE = "InvalidMessageStructure"
    INVALID_DESTINATION = "InvalidDestination"
    SERVER_ERROR = "ServerError"
    MEDIA_TYPE_NOT_ALLOWED = "MediaTypeNotAllowed"
    INVALID_MEDIA_CONTENT_LENGTH = "InvalidMediaContentLength"
    RECIPIENT_OPTED_OUT = "RecipientOptedOut"
    DATA_FILTERED = "DataFiltered"


class ButtonResponseType(StrEnum):
    """``buttonResponse.type`` of ``/inbound/open/structured/response``."""

    BUTTON = "Button"
    QUICK_REPLY = "QuickReply"
    DATE_PICKER = "DatePicker"


def genesys_time(unix_seconds: float) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``, as Genesys's examples: ``2025-06-08T21:39:43.000Z``."""
    moment = datetime.fromtimestamp(unix_seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# -- Outbound webhook (Genesys -> us) ---------------------------------------------------------------


class OutboundWebhookError(PermanentError):
    """A Genesys outbound webhook body we cannot read: to the dead-letter queue / ERROR_EVENTS."""

    def __init__(self, message: str, *, reason: str = "invalid_genesys_webhook") -> None:
        super().__init__(message, reason=reason)


class _GenesysModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class _Recipient(_GenesysModel):
    id: str
    id_type: str | None = Field(default=None, alias="idType")
    nickname: str | None = None


class _Channel(_GenesysModel):
    id: str | None = None  # integration id
    platform: str | None = None
    type: str | None = None
    message_id: str | None = Field(default=None, alias="messageId")
    to: _Recipient
    from_: _Recipient | None = Field(default=None, alias="from")
    time: str | None = None


class _Attachment(_GenesysModel):
    id: str | None = None
    media_type: str | None = Field(default=None, alias="mediaType")
    url: str | None = None
    mime: str | None = None
    filename: str | None = None
    content_size_bytes: int | None = Field(default=None, alias="contentSizeBytes")


class _Content(_GenesysModel):
    content_type: str | None = Field(default=None, alias="contentType")
    attachment: _Attachment | None = None


class _Typing(_GenesysModel):
    type: str | None = None
    duration: int | None = None


class _Event(_GenesysModel):
    event_type: str = Field(alias="eventType")
    typing: _Typing | None = None


class _Reason(_GenesysModel):
    code: str | None = None
    message: str | None = None


class _OpenNormalizedMessage(_GenesysModel):
    id: str
    channel: _Channel
    type: str
    text: str | None = None
    content: list[_Content] = Field(default_factory=list)
    events: list[_Event] = Field(default_factory=list)
    status: str | None = None
    reasons: list[_Reason] = Field(default_factory=list)
    is_final_receipt: bool | None = Field(default=None, alias="isFinalReceipt")
    direction: str | None = None
    originating_entity: str | None = Field(default=None, alias="originatingEntity")


class OutboundKind(StrEnum):
    """``OpenNormalizedMessage.type``."""

    TEXT = "Text"
    STRUCTURED = "Structured"
    RECEIPT = "Receipt"
    EVENT = "Event"


class OutboundAttachment(BaseModel):
    """An agent's attachment: download right away (the URL is Genesys's, not ours)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str | None = None
    media_type: str | None = None  # Image | Video | Audio | File | Link
    url: str
    mime: str | None = None
    filename: str | None = None
    size: int | None = None  # contentSizeBytes


class TypingEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str = "On"
    duration_ms: int | None = None  # typing.duration, as Genesys sent it


class ReceiptReason(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str | None = None
    message: str | None = None


class OutboundEvent(Record):
    """One Genesys outbound webhook POST, typed; key ``f"{tenant_id}:{customer_id}"``. Dedupe on ``id``."""

    v: Literal[1] = SCHEMA_VERSION
    id: str  # Genesys message id
    tenant_id: str
    integration_id: str | None = None  # channel.id
    kind: OutboundKind
    customer_id: str  # channel.to.id: the wa_id (or BSUID) we sent as from.id
    customer_id_type: str | None = None  # channel.to.idType
    channel_message_id: str | None = None  # channel.messageId (for receipts: our wamid of the inbound message)
    time: str | None = None  # channel.time, as Genesys sent it
    agent_nickname: str | None = None  # channel.from.nickname
    direction: str | None = None
    text: str | None = None
    attachments: tuple[OutboundAttachment, ...] = ()
    typing: TypingEvent | None = None  # Event with eventType Typing
    event_types: tuple[str, ...] = ()  # every events[].eventType, so an unknown event is not lost
    receipt_status: str | None = None  # Receipt: Delivered | Failed | ... (Genesys's own words)
    reasons: tuple[ReceiptReason, ...] = ()
    is_final_receipt: bool | None = None
    originating_entity: str | None = None  # e.g. Human | Bot
    raw: dict[str, Any]  # the body as received, for anything not modelled here

    @property
    def key(self) -> str:
        return f"{self.tenant_id}:{self.customer_id}"


def parse_outbound_webhook(body: bytes | str | dict[str, Any], *, tenant_id: str) -> OutboundEvent:
    """Genesys's ``OpenNormalizedMessage`` POST as an ``OutboundEvent``; ``OutboundWebhookError`` if unreadable."""
    if isinstance(body, bytes | str):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise OutboundWebhookError(f"body is not valid JSON: {exc}", reason="invalid_json") from exc
    else:
        data = body
    if not isinstance(data, dict):
        raise OutboundWebhookError("body is not a JSON object")
    try:
        message = _OpenNormalizedMessage.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        location = ".".join(str(part) for part in error["loc"])
        raise OutboundWebhookError(f"not an OpenNormalizedMessage: {location}: {error['msg']}") from exc
    try:
        kind = OutboundKind(message.type)
    except ValueError as exc:
        raise OutboundWebhookError(f"unknown message type {message.type!r}", reason="unknown_genesys_type") from exc
    attachments = tuple(
        OutboundAttachment(
            id=item.attachment.id,
            media_type=item.attachment.media_type,
            url=item.attachment.url,
            mime=item.attachment.mime,
            filename=item.attachment.filename,
            size=item.attachment.content_size_bytes,
        )
        for item in message.content
        if item.attachment is not None and item.attachment.url
    )
    typing = next(
        (
            TypingEvent(
                type=(event.typing.type if event.typing and event.typing.type else "On"),
                duration_ms=event.typing.duration if event.typing else None,
            )
            for event in message.events
            if event.event_type == "Typing"
        ),
        None,
    )
    channel = message.channel
    return OutboundEvent(
        id=message.id,
        tenant_id=tenant_id,
        integration_id=channel.id,
        kind=kind,
        customer_id=channel.to.id,
        customer_id_type=channel.to.id_type,
        channel_message_id=channel.message_id,
        time=channel.time,
        agent_nickname=channel.from_.nickname if channel.from_ else None,
        direction=message.direction,
        text=message.text,
        attachments=attachments,
        typing=typing,
        event_types=tuple(event.event_type for event in message.events),
        receipt_status=message.status,
        reasons=tuple(ReceiptReason(code=reason.code, message=reason.message) for reason in message.reasons),
        is_final_receipt=message.is_final_receipt,
        originating_entity=message.originating_entity,
        raw=data,
    )
