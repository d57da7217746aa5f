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
from wabridge.schemas.lenient import as_dict, as_dicts
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
    # Structured content, read leniently (``_choices``, ``_template``): a malformed quick reply
    # must not make the whole agent message unreadable.
    quick_reply: Any = Field(default=None, alias="quickReply")
    quick_reply_v2: Any = Field(default=None, alias="quickReplyV2")
    list_picker: Any = Field(default=None, alias="listPicker")
    template: Any = None


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


class ChoiceKind(StrEnum):
    """Where an agent's choices came from: ``QuickReply``/``QuickReplyV2`` or ``ListPicker`` content."""

    QUICK_REPLY = "QuickReply"
    LIST_PICKER = "ListPicker"


class Choice(BaseModel):
    """One choice the agent offers (a quick reply, or a list picker item)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str
    payload: str  # what comes back when the customer picks it (the item id, else the title)
    description: str | None = None  # list picker item subtitle
    section: str | None = None  # list picker section title


class Template(BaseModel):
    """A Genesys ``Notification`` (``template``): sent to WhatsApp as the template of that name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str  # template.id: the template's name as the messaging platform knows it
    language: str  # template.language, e.g. en_US
    body_text: str | None = None  # the filled-in text as Genesys shows it to the agent
    header_parameters: tuple[str, ...] = ()
    body_parameters: tuple[str, ...] = ()


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
    choice_kind: ChoiceKind | None = None  # Structured with quick replies or a list picker
    choices_title: str | None = None  # quickReplyV2.title (shown above the choices)
    choices: tuple[Choice, ...] = ()
    template: Template | None = None  # Structured Notification
    content_types: tuple[str, ...] = ()  # every content[].contentType, so an unknown one is not lost
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
    choice_kind, choices_title, choices = _choices(message.content)
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
        choice_kind=choice_kind,
        choices_title=choices_title,
        choices=choices,
        template=next((t for t in (_template(item.template) for item in message.content) if t is not None), None),
        content_types=tuple(_text(item.content_type) or "" for item in message.content),
        typing=typing,
        event_types=tuple(event.event_type for event in message.events),
        receipt_status=message.status,
        reasons=tuple(ReceiptReason(code=reason.code, message=reason.message) for reason in message.reasons),
        is_final_receipt=message.is_final_receipt,
        originating_entity=message.originating_entity,
        raw=data,
    )


# -- Structured content, read leniently -------------------------------------------------------------


def _text(value: Any) -> str | None:
    """A non-empty string, or None: numbers become strings, anything else (objects, lists) is ignored."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int | float):
        return str(value).strip() or None
    return None


def _choice(title: Any, payload: Any, description: Any = None, section: Any = None) -> Choice | None:
    text = _text(title)
    if text is None:
        return None
    return Choice(title=text, payload=_text(payload) or text, description=_text(description), section=_text(section))


def _choices(content: list[_Content]) -> tuple[ChoiceKind | None, str | None, tuple[Choice, ...]]:
    """The agent's quick replies (``QuickReply`` items, or one ``QuickReplyV2``) or list picker."""
    found: list[Choice | None] = []
    kind: ChoiceKind | None = None
    title: str | None = None
    for item in content:
        if isinstance(item.quick_reply, dict):
            kind = kind or ChoiceKind.QUICK_REPLY
            found.append(_choice(item.quick_reply.get("text"), item.quick_reply.get("payload")))
        if isinstance(item.quick_reply_v2, dict):
            kind = kind or ChoiceKind.QUICK_REPLY
            title = title or _text(item.quick_reply_v2.get("title"))
            for action in as_dicts(item.quick_reply_v2.get("actions")):
                found.append(_choice(action.get("text"), action.get("payload")))
        if isinstance(item.list_picker, dict):
            kind = kind or ChoiceKind.LIST_PICKER
            for section in as_dicts(item.list_picker.get("sections")):
                for entry in as_dicts(section.get("items")):
                    picked = _choice(entry.get("title"), entry.get("id"), entry.get("subtitle"), section.get("title"))
                    found.append(picked)
    return kind, title, tuple(choice for choice in found if choice is not None)


def _template(raw: Any) -> Template | None:
    if not isinstance(raw, dict):
        return None
    name = _text(raw.get("id")) or _text(raw.get("name"))
    if name is None:
        return None
    header = as_dict(raw.get("header"))
    body = as_dict(raw.get("body"))
    return Template(
        name=name,
        language=(_text(raw.get("language")) or "en").replace("-", "_"),
        body_text=_text(body.get("text")),
        header_parameters=tuple(_text(p.get("text")) or "" for p in as_dicts(header.get("parameters"))),
        body_parameters=tuple(_text(p.get("text")) or "" for p in as_dicts(body.get("parameters"))),
    )
