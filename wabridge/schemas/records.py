"""The records that flow between stages, as bytes on Kafka topics.

Plain pydantic models, serialized with orjson, carrying their schema version ``v`` and no Faust
metadata, so the bridge connector (not a Faust app) and the Faust agents share them. A record whose
``v`` this code does not know fails to load instead of being half-read.

Pipeline: the bridge splits a webhook into ``WebhookEvent`` records (``wa-inbound``). The prepare
stage's steps then, in one agent: normalize turns each into an ``InboundMessage``, a
``StatusUpdate``, a ``PreferenceUpdate`` or a ``BusinessError``; resolve_conversation adds a
``ConversationRef`` (``ResolvedMessage``); media adds ``Attachment`` or ``MediaUnavailable``
(``ReadyMessage``, ``wa-ready``). Deliver calls ``transforms.to_open_messages``. The other way,
resolve_conversation puts a ``ReceiptDue`` for each delivered or failed part of an agent's message
on ``agent-messages``, next to the agent's events.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any, Final, Literal, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field

from wabridge.schemas.status import MessageStatus

SCHEMA_VERSION: Final = 1


class Record(BaseModel):
    """Base of every stage record: frozen, no unknown fields, bytes in and out."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_bytes(cls, data: bytes | str) -> Self:
        """Load a record; raises ``pydantic.ValidationError`` on a wrong shape or unknown version."""
        return cls.model_validate(orjson.loads(data))


class EventKind(StrEnum):
    MESSAGE = "message"  # value.messages[i]
    STATUS = "status"  # value.statuses[i]
    ERROR = "error"  # value.errors[i]: a problem of the business number, not of one message
    PREFERENCE = "preference"  # field user_preferences: value.user_preferences[i] (marketing stop / resume)
    TEMPLATE = "template"  # fields message_template_status_update, template_category_update: a WABA's template


class Contact(BaseModel):
    """The ``value.contacts[]`` entry that belongs to one message (all optional: BSUID rollout)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = None  # profile.name, as the customer set it in WhatsApp
    wa_id: str | None = None  # phone-number id; missing for some users with a username
    user_id: str | None = None  # BSUID, business-scoped user id, e.g. "US.13491208655302741918"
    parent_user_id: str | None = None
    username: str | None = None


class WebhookEvent(Record):
    """One message, status or value-level error of a Meta webhook POST, with its routing facts.

    Produced by ``schemas.meta.split_webhook`` (the bridge), keyed ``key`` on ``wa-inbound``.
    """

    v: Literal[1] = SCHEMA_VERSION
    kind: EventKind
    tenant_id: str
    # wa_id, else the BSUID; for statuses the recipient; for value-level errors "_business:{phone_number_id}";
    # "_unidentified:{phone_number_id}" when Meta sent an event naming nobody (normalize rejects it).
    customer_id: str
    key: str  # f"{tenant_id}:{customer_id}": the Kafka key of every stage topic
    phone_number_id: str  # value.metadata.phone_number_id: the business number (tenant routing)
    display_phone_number: str | None = None
    waba_id: str | None = None  # entry[].id
    field: str = "messages"  # changes[].field
    contact: Contact | None = None  # the contact of this message (messages only)
    event: Any  # the raw message / status / error object as Meta sent it (normally a dict)
    webhook_id: str  # id of the POST (the edge's archive id), shared by all events of one POST
    received_at: float  # unix seconds when the edge received the POST
    entry_index: int  # position within the POST, so order inside one POST is kept
    change_index: int
    index: int  # index within messages[] / statuses[] / errors[]
    seq: int  # ordinal of this event within the POST (0-based, over all kinds)

    @property
    def event_id(self) -> str:
        """Unique per event of a POST: ``{webhook_id}:{seq}``."""
        return f"{self.webhook_id}:{self.seq}"


class MetaError(BaseModel):
    """An ``errors[]`` item of Meta (message-, status- or value-level)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: int
    title: str | None = None
    message: str | None = None
    details: str | None = None  # error_data.details


class InboundMessage(Record):
    """A customer's WhatsApp message, normalized. Dedupe on ``wamid``."""

    v: Literal[1] = SCHEMA_VERSION
    wamid: str  # message id: the dedupe key and Genesys channel.messageId
    tenant_id: str
    customer_id: str  # wa_id, else bsuid
    wa_id: str | None = None  # message "from" (or the contact's wa_id)
    bsuid: str | None = None  # from_user_id (or the contact's user_id)
    parent_bsuid: str | None = None
    username: str | None = None
    type: str  # Meta's message type: text, image, ..., system, unsupported (kept as sent, new types pass)
    timestamp: int  # unix seconds (Meta sends a string)
    contact_name: str | None = None  # profile.name
    phone_number_id: str
    display_phone_number: str | None = None
    waba_id: str | None = None
    # The object under the type's own key, e.g. {"body": ...} for text, {"id", "mime_type", ...} for
    # image; a list for contacts. Empty for types without one.
    payload: dict[str, Any] | list[Any] = Field(default_factory=dict)
    context: dict[str, Any] | None = None  # reply {from, id}, forwarded flags, referred_product
    referral: dict[str, Any] | None = None  # click-to-WhatsApp ad
    errors: tuple[MetaError, ...] = ()  # e.g. 131051 unsupported, 131052 media too large
    webhook_id: str
    received_at: float

    @property
    def key(self) -> str:
        return f"{self.tenant_id}:{self.customer_id}"

    @property
    def context_message_id(self) -> str | None:
        """The wamid this message replies to (or reacts to, for a reaction)."""
        if self.type == "reaction" and isinstance(self.payload, dict):
            target = self.payload.get("message_id")
            return str(target) if target else None
        if self.context and self.context.get("id"):
            return str(self.context["id"])
        return None


class StatusUpdate(Record):
    """A WhatsApp status of one of our outbound messages; dedupe on ``dedupe_key``."""

    v: Literal[1] = SCHEMA_VERSION
    wamid: str  # the outbound message's wamid
    tenant_id: str
    customer_id: str  # recipient_id, else the recipient's BSUID
    recipient_id: str | None = None  # wa_id
    recipient_bsuid: str | None = None
    status: MessageStatus
    timestamp: int
    errors: tuple[MetaError, ...] = ()
    conversation: dict[str, Any] | None = None  # {id, origin{type}, expiration_timestamp?}
    pricing: dict[str, Any] | None = None  # {billable, pricing_model, category, type?}
    biz_opaque_callback_data: str | None = None
    phone_number_id: str
    webhook_id: str
    received_at: float

    @property
    def key(self) -> str:
        return f"{self.tenant_id}:{self.customer_id}"

    @property
    def dedupe_key(self) -> str:
        return f"{self.wamid}:{self.status.value}"


class BusinessError(Record):
    """A value-level ``errors[]`` item: the business number has a problem, no customer message."""

    v: Literal[1] = SCHEMA_VERSION
    tenant_id: str
    customer_id: str  # "_business:{phone_number_id}"
    phone_number_id: str
    error: MetaError
    webhook_id: str
    received_at: float

    @property
    def key(self) -> str:
        return f"{self.tenant_id}:{self.customer_id}"


class PreferenceUpdate(Record):
    """A customer stopped or resumed a category of messages (Meta's ``user_preferences`` webhook)."""

    v: Literal[1] = SCHEMA_VERSION
    tenant_id: str
    customer_id: str
    category: str  # marketing_messages
    preference: str  # stop | resume (Meta's ``value``)
    timestamp: int
    detail: str | None = None
    phone_number_id: str
    webhook_id: str
    received_at: float

    @property
    def key(self) -> str:
        return f"{self.tenant_id}:{self.customer_id}"


class TemplateUpdate(Record):
    """A template of the tenant's WhatsApp Business Account changed at Meta: its status (approved,
    paused, disabled…: ``message_template_status_update``) or its category
    (``template_category_update``). Keyed by the WABA (``_waba:{id}``): not a customer's event."""

    v: Literal[1] = SCHEMA_VERSION
    tenant_id: str
    customer_id: str  # "_waba:{waba_id}"
    waba_id: str
    field: str
    template_name: str | None = None
    language: str | None = None
    status: str | None = None  # Meta's ``event`` (APPROVED, PAUSED, DISABLED, REJECTED, …)
    category: str | None = None  # the new category
    webhook_id: str
    received_at: float

    @property
    def key(self) -> str:
        return f"{self.tenant_id}:{self.customer_id}"


class GenesysMediaType(StrEnum):
    """Genesys ``attachment.mediaType`` (the enum, never a MIME string). ``Link`` is not used inbound."""

    IMAGE = "Image"
    VIDEO = "Video"
    AUDIO = "Audio"
    FILE = "File"


# WhatsApp media type -> Genesys mediaType.
MEDIA_TYPE_BY_WHATSAPP_TYPE: dict[str, GenesysMediaType] = {
    "image": GenesysMediaType.IMAGE,
    "sticker": GenesysMediaType.IMAGE,
    "video": GenesysMediaType.VIDEO,
    "audio": GenesysMediaType.AUDIO,  # voice notes too (audio.voice = true)
    "document": GenesysMediaType.FILE,
}


class Attachment(BaseModel):
    """One stored, presigned media file, ready for Genesys ``content[].attachment``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str  # presigned GET that Genesys downloads from (signed again by the deliver stage, see key)
    # The object in the media-inbound bucket: the deliver stage presigns it when it POSTs, so a
    # backlog or a replay never hands the agent a link that expired while the message waited.
    key: str | None = None
    mime: str  # e.g. "image/jpeg", as Meta reported it (parameters such as "; codecs=opus" kept)
    media_type: GenesysMediaType
    filename: str | None = None
    sha256: str | None = None  # as verified (hex)
    size: int | None = None  # bytes


class MediaUnavailableReason(StrEnum):
    TOO_LARGE = "too_large"  # over Genesys's 25 MB or our cap
    EXPIRED = "expired"  # media id gone (older than 7 days) or URL beyond recovery
    META_ERROR = "meta_error"  # the message carries a Meta error, e.g. 131052 (over 100 MB)
    CHECKSUM_MISMATCH = "checksum_mismatch"
    DOWNLOAD_FAILED = "download_failed"  # retries exhausted or a permanent 4xx


class MediaUnavailable(BaseModel):
    """Why a message's media could not be attached: the agent gets this as a clear note."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: MediaUnavailableReason
    detail: str | None = None  # human-readable, shown to the agent
    mime: str | None = None
    filename: str | None = None
    size: int | None = None


class Quoted(BaseModel):
    """The earlier message a customer's reply or reaction refers to, as the agent should read it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    by_agent: bool  # the agent's message (ours, outbound) or the customer's own
    preview: str | None = None  # its first words, when tracked


class ConversationRef(BaseModel):
    """The conversation a message belongs to, as resolve_conversation knows it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    conversation_id: uuid.UUID  # ours (uuid4), stable per tenant + customer
    genesys_conversation_id: str | None = None  # once Genesys returned it (prefetchConversationId)
    # Outbound wamid -> Genesys message id, for the wamid this message replies or reacts to, when
    # known: a button reply to an agent's structured message becomes a structured response.
    originating_message_ids: dict[str, str] = Field(default_factory=dict)
    quoted: Quoted | None = None  # what the message replies or reacts to, when it is tracked

    def originating_message_id(self, message: InboundMessage) -> str | None:
        target = message.context_message_id
        return self.originating_message_ids.get(target) if target else None


class ResolvedMessage(Record):
    """An inbound message with its conversation (between the prepare stage's steps)."""

    v: Literal[1] = SCHEMA_VERSION
    message: InboundMessage
    conversation: ConversationRef

    @property
    def key(self) -> str:
        return self.message.key


class ReadyMessage(Record):
    """``wa-ready``: a resolved message whose media is stored (or known to be unavailable)."""

    v: Literal[1] = SCHEMA_VERSION
    message: InboundMessage
    conversation: ConversationRef
    attachments: tuple[Attachment, ...] = ()
    media_unavailable: MediaUnavailable | None = None

    @property
    def key(self) -> str:
        return self.message.key


class ReceiptDue(Record):
    """Meta's ``delivered`` or ``failed`` status of a part of an agent's message, to be told to
    Genesys as a receipt (``agent-messages``, keyed like the customer's other outbound events)."""

    v: Literal[1] = SCHEMA_VERSION
    receipt_for: str  # the Genesys id of the agent's message
    status: StatusUpdate

    @property
    def key(self) -> str:
        return self.status.key
