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


class TemplateButton(BaseModel):
    """One button of a Genesys template (``NotificationTemplateButton``): ``QuickReply`` with the
    payload that comes back when tapped, ``Url`` with the parameters of its URL, or ``PhoneNumber``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str  # QuickReply | Url | PhoneNumber (the SDK's enum); anything else is kept as sent
    index: int  # the button's place in the template (Meta's ``index``)
    payload: str | None = None
    parameters: tuple[str, ...] = ()


class Template(BaseModel):
    """A Genesys ``Notification`` (``ContentNotificationTemplate``): sent to WhatsApp as the
    template of that name. Genesys names a WhatsApp template ``namespace@name`` (its SDK's
    ``ContentNotificationTemplate.id``); Meta's ``name`` is the part after ``@``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str  # Meta's template name (the part of template.id after "@")
    namespace: str | None = None  # the part before "@", when Genesys sent one
    language: str  # Meta's language code, e.g. en_US (from Genesys's en-US)
    body_text: str | None = None  # the filled-in text as Genesys shows it to the agent
    header_parameters: tuple[str, ...] = ()  # a Text header's parameters
    header_media: OutboundAttachment | None = None  # a Media header's image, video or document
    body_parameters: tuple[str, ...] = ()
    buttons: tuple[TemplateButton, ...] = ()


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
    choices_title: str | None = None  # quickReplyV2.title, or a list picker's receivedMessage.title
    choices_button: str | None = None  # a list picker's receivedMessage.buttonLabel
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
    choice_kind, choices_title, choices_button, choices = _choices(message.content)
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
        choices_button=choices_button,
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


def _choices(content: list[_Content]) -> tuple[ChoiceKind | None, str | None, str | None, tuple[Choice, ...]]:
    """The agent's quick replies (``QuickReply`` items, or one ``QuickReplyV2``) or list picker,
    with the prompt the agent wrote: a title, and a list picker's button label
    (``ConversationContentListPicker.receivedMessage``: title, buttonLabel)."""
    found: list[Choice | None] = []
    kind: ChoiceKind | None = None
    title: str | None = None
    button: str | None = None
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
            prompt = as_dict(item.list_picker.get("receivedMessage"))
            title = title or _text(prompt.get("title")) or _text(prompt.get("header"))
            button = button or _text(prompt.get("buttonLabel"))
            for section in as_dicts(item.list_picker.get("sections")):
                for entry in as_dicts(section.get("items")):
                    picked = _choice(entry.get("title"), entry.get("id"), entry.get("subtitle"), section.get("title"))
                    found.append(picked)
    return kind, title, button, tuple(choice for choice in found if choice is not None)


def _template(raw: Any) -> Template | None:
    """Genesys's ``ContentNotificationTemplate`` (id, language, header, body, buttons), read leniently:
    a field of the wrong type counts as absent, and the checks against the tenant's templates
    (``agents.outbound``) then tell the agent what is missing."""
    if not isinstance(raw, dict):
        return None
    full = _text(raw.get("id")) or _text(raw.get("name"))
    if full is None:
        return None
    namespace, _, name = full.rpartition("@")
    if not name:
        return None
    header = as_dict(raw.get("header"))
    body = as_dict(raw.get("body"))
    return Template(
        name=name,
        namespace=namespace or None,
        language=meta_language(_text(raw.get("language"))),
        body_text=_text(body.get("text")),
        header_parameters=_parameters(header.get("parameters")),
        header_media=_header_media(header),
        body_parameters=_parameters(body.get("parameters")),
        buttons=tuple(b for b in (_button(i, raw) for i, raw in enumerate(as_dicts(raw.get("buttons")))) if b),
    )


def meta_language(language: str | None) -> str:
    """Meta's language code for Genesys's: ``en-US`` / ``en_us`` → ``en_US``, ``pt-br`` → ``pt_BR``,
    ``es`` → ``es`` (Meta's "Supported languages": a language, and a region in capitals)."""
    if not language:
        return "en"
    base, _, region = language.strip().replace("-", "_").partition("_")
    return f"{base.lower()}_{region.upper()}" if region else base.lower()


def _parameters(raw: Any) -> tuple[str, ...]:
    return tuple(_text(p.get("text")) or "" for p in as_dicts(raw))


def _header_media(header: dict[str, Any]) -> OutboundAttachment | None:
    media = as_dict(header.get("media"))
    url = _text(media.get("url"))
    if url is None:
        return None
    return OutboundAttachment(
        id=_text(media.get("id")),
        media_type=_text(media.get("mediaType")),
        url=url,
        mime=_text(media.get("mime")),
        filename=_text(media.get("filename")),
    )


def _button(position: int, raw: dict[str, Any]) -> TemplateButton | None:
    kind = _text(raw.get("type"))
    if kind is None:
        return None
    index = raw.get("index")
    return TemplateButton(
        type=kind,
        index=index if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < 10 else position,
        payload=_text(raw.get("payload")),
        parameters=_parameters(raw.get("parameters")),
    )
