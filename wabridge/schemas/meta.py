"""Meta WhatsApp Cloud API webhooks: envelope check, splitting into per-event records, normalizing.

Pure functions, no I/O. The edge calls ``phone_number_ids`` (tenant lookup) and
``archive_message_id``; the bridge calls ``split_webhook``; the prepare stage calls ``normalize``.

Meta batches up to 1000 updates, for many customers, in one POST: every entry, change, message,
status and error is walked, never only ``[0]``. Meta adds fields over time, so its models allow
extra fields; our records (``schemas.records``) do not.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wabridge.errors import PermanentError
from wabridge.schemas.records import (
    BusinessError,
    Contact,
    EventKind,
    InboundMessage,
    MetaError,
    PreferenceUpdate,
    StatusUpdate,
    TemplateUpdate,
    WebhookEvent,
)
from wabridge.schemas.status import META_STATUSES, MessageStatus

WHATSAPP_OBJECT = "whatsapp_business_account"
MESSAGES_FIELD = "messages"
# A customer's marketing preference changed (stop / resume): a per-customer event like a message.
PREFERENCES_FIELD = "user_preferences"
# A template of the WABA changed status or category (Meta's "Template webhooks"): no phone number
# in them, so the edge routes them by the WABA (``entry[].id``), as ``waba:{id}``.
TEMPLATE_FIELDS = ("message_template_status_update", "template_category_update")
WABA_ROUTE_PREFIX = "waba:"
WABA_CUSTOMER_PREFIX = "_waba:"
BUSINESS_CUSTOMER_PREFIX = "_business:"
UNIDENTIFIED_CUSTOMER_PREFIX = "_unidentified:"
# A phone number as Meta writes a wa_id: E.164 without the plus (7 to 15 digits, no leading 0). Only what
# Meta's identifiers look like is recorded by the identity directory: a BSUID where a BSUID goes,
# digits where a phone number goes. Anything else (a hostile ``from_user_id`` of "0") could tie
# strangers to one key.
_PHONE = re.compile(r"^[1-9][0-9]{6,14}$")


# A business-scoped user id (BSUID): the country code, a period, then letters and digits; a parent
# BSUID adds ``ENT.`` (``US.13491208655302741918``, ``US.ENT.…``; Meta, "Business-scoped user IDs").
# A phone number (``wa_id``) is digits only.
_BSUID = re.compile(r"^[A-Z]{2}\.[A-Za-z0-9.]{1,128}$")


def is_bsuid(customer_id: str) -> bool:
    """Whether a customer id is a BSUID (sends go by ``recipient``) rather than a phone number (``to``)."""
    return bool(_BSUID.match(customer_id))


class WebhookShapeError(PermanentError):
    """The body is not JSON, or JSON but not a WhatsApp Business Account webhook: quarantine it."""

    def __init__(self, message: str, *, reason: str = "not_whatsapp_payload") -> None:
        super().__init__(message, reason=reason)


class InvalidEventError(PermanentError):
    """One split event cannot be normalized (normalize routes it to ERROR_EVENTS with ``reason``)."""


# -- Meta wire models (extra fields allowed: Meta adds them) -------------------------------------


class _MetaModel(BaseModel):
    model_config = ConfigDict(extra="allow")


_M = TypeVar("_M", bound=_MetaModel)


class ValueMetadata(_MetaModel):
    phone_number_id: str
    display_phone_number: str | None = None


class ChangeValue(_MetaModel):
    messaging_product: str | None = None
    metadata: ValueMetadata | None = None
    contacts: list[Any] = Field(default_factory=list)
    messages: list[Any] = Field(default_factory=list)
    statuses: list[Any] = Field(default_factory=list)
    errors: list[Any] = Field(default_factory=list)
    user_preferences: list[Any] = Field(default_factory=list)


class Change(_MetaModel):
    field: str
    value: ChangeValue


class Entry(_MetaModel):
    id: str | None = None  # WABA id
    changes: list[Change] = Field(default_factory=list)


class WebhookBody(_MetaModel):
    object: str
    entry: list[Entry] = Field(min_length=1)


class MetaErrorData(_MetaModel):
    details: str | None = None


class MetaErrorIn(_MetaModel):
    code: int
    title: str | None = None
    message: str | None = None
    error_data: MetaErrorData | None = None

    def to_record(self) -> MetaError:
        details = self.error_data.details if self.error_data else None
        return MetaError(code=self.code, title=self.title, message=self.message, details=details)


class MetaMessage(_MetaModel):
    id: str
    from_: str | None = Field(default=None, alias="from")
    from_user_id: str | None = None
    parent_user_id: str | None = None
    username: str | None = None
    timestamp: int  # Meta sends unix seconds as a string
    type: str
    context: dict[str, Any] | None = None
    referral: dict[str, Any] | None = None
    errors: list[MetaErrorIn] = Field(default_factory=list)


class MetaStatus(_MetaModel):
    id: str
    status: str
    timestamp: int
    recipient_id: str | None = None
    recipient_user_id: str | None = None
    conversation: dict[str, Any] | None = None
    pricing: dict[str, Any] | None = None
    errors: list[MetaErrorIn] = Field(default_factory=list)
    biz_opaque_callback_data: str | None = None


# -- Envelope -------------------------------------------------------------------------------------


def parse_webhook(body: bytes | str | dict[str, Any]) -> WebhookBody:
    """The checked envelope; raises ``WebhookShapeError`` for anything that is not a WhatsApp webhook."""
    if isinstance(body, bytes | str):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise WebhookShapeError(f"body is not valid JSON: {exc}", reason="invalid_json") from exc
    else:
        data = body
    if not isinstance(data, dict):
        raise WebhookShapeError("body is not a JSON object")
    if data.get("object") != WHATSAPP_OBJECT:
        raise WebhookShapeError(f"object is {data.get('object')!r}, not {WHATSAPP_OBJECT!r}")
    try:
        parsed = WebhookBody.model_validate(data)
    except ValidationError as exc:
        raise WebhookShapeError(f"not a WhatsApp webhook: {_first_error(exc)}") from exc
    for entry_index, entry in enumerate(parsed.entry):
        for change_index, change in enumerate(entry.changes):
            if change.field == MESSAGES_FIELD and _has_events(change.value) and change.value.metadata is None:
                raise WebhookShapeError(
                    f"entry[{entry_index}].changes[{change_index}] carries events but no metadata.phone_number_id"
                )
    return parsed


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"])
    return f"{location}: {error['msg']}"


def _has_events(value: ChangeValue) -> bool:
    return bool(value.messages or value.statuses or value.errors)


def phone_number_ids(body: bytes | str | dict[str, Any] | WebhookBody) -> set[str]:
    """Every business ``phone_number_id`` in the POST: the edge's tenant lookup.

    More than one id may belong to more than one tenant; the edge decides what that means.
    """
    parsed = body if isinstance(body, WebhookBody) else parse_webhook(body)
    return {
        change.value.metadata.phone_number_id
        for entry in parsed.entry
        for change in entry.changes
        if change.value.metadata is not None
    }


def routing_ids(body: bytes | str | dict[str, Any] | WebhookBody) -> set[str]:
    """Every id the edge routes the POST by: each business ``phone_number_id``, and ``waba:{id}``
    for the WABA of a change that names no number (a template update)."""
    parsed = body if isinstance(body, WebhookBody) else parse_webhook(body)
    return phone_number_ids(parsed) | {
        WABA_ROUTE_PREFIX + entry.id
        for entry in parsed.entry
        for change in entry.changes
        if change.field in TEMPLATE_FIELDS and change.value.metadata is None and entry.id
    }


def select_changes(document: dict[str, Any], numbers: set[str] | None) -> dict[str, Any] | None:
    """The webhook with only the changes of business numbers in ``numbers`` (``None``: the changes
    that name no number), its entries and other fields kept; None when no change is left.

    A POST serving several tenants (one Meta app, their numbers) is split this way at the edge, so
    each tenant's part is archived under its prefix and accepted or refused on its own.
    """
    entries = []
    for entry in document.get("entry") or []:
        if not isinstance(entry, dict):
            continue
        changes = [
            change
            for change in entry.get("changes") or []
            if isinstance(change, dict) and _in_numbers(_change_route(entry, change), numbers)
        ]
        if changes:
            entries.append({**entry, "changes": changes})
    return {**document, "entry": entries} if entries else None


def _change_route(entry: dict[str, Any], change: dict[str, Any]) -> str | None:
    value = change.get("value")
    metadata = value.get("metadata") if isinstance(value, dict) else None
    if isinstance(metadata, dict):
        return _text(metadata.get("phone_number_id"))
    waba_id = _text(entry.get("id"))
    return WABA_ROUTE_PREFIX + waba_id if change.get("field") in TEMPLATE_FIELDS and waba_id else None


def _in_numbers(number: str | None, numbers: set[str] | None) -> bool:
    return number is None if numbers is None else number in numbers


def non_message_fields(body: WebhookBody) -> list[str]:
    """Fields of changes that ``split_webhook`` does not turn into events (e.g. ``account_update``).

    They are not customer traffic; the raw archive keeps them. Returned so the caller can log or count.
    """
    handled = (MESSAGES_FIELD, PREFERENCES_FIELD, *TEMPLATE_FIELDS)
    return [change.field for entry in body.entry for change in entry.changes if change.field not in handled]


def message_ids(body: bytes | str | dict[str, Any] | WebhookBody) -> list[str]:
    """Every message and status id (wamid) in the POST, in order."""
    parsed = body if isinstance(body, WebhookBody) else parse_webhook(body)
    ids: list[str] = []
    for entry in parsed.entry:
        for change in entry.changes:
            if change.field != MESSAGES_FIELD:
                continue
            for item in (*change.value.messages, *change.value.statuses):
                if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"]:
                    ids.append(item["id"])
    return ids


_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._=-]")


def archive_message_id(raw: bytes, parsed: WebhookBody | None = None) -> str:
    """The ``{messageId}`` of the raw archive key: the first wamid, else ``sha256-<16 hex>`` of the body.

    Safe as an S3 key segment (a wamid is base64 and may hold ``/`` or ``+``).
    """
    ids: list[str] = []
    if parsed is not None:
        ids = message_ids(parsed)
    else:
        try:
            ids = message_ids(raw)
        except WebhookShapeError:
            ids = []
    if ids:
        return _UNSAFE_KEY_CHARS.sub("_", ids[0])
    return "sha256-" + hashlib.sha256(raw).hexdigest()[:16]


# -- Splitting --------------------------------------------------------------------------------------


def split_webhook(
    body: bytes | str | dict[str, Any] | WebhookBody,
    *,
    tenant_id: str,
    webhook_id: str,
    received_at: float,
) -> list[WebhookEvent]:
    """One record per message, status and value-level error, across all entries and changes, in order.

    An event that names no customer is still returned (customer ``_unidentified:{phone_number_id}``)
    so that normalize rejects it visibly instead of it vanishing here.
    """
    parsed = body if isinstance(body, WebhookBody) else parse_webhook(body)
    events: list[WebhookEvent] = []
    for entry_index, entry in enumerate(parsed.entry):
        for change_index, change in enumerate(entry.changes):
            value = change.value
            if change.field == PREFERENCES_FIELD and value.user_preferences and value.metadata is not None:
                common_preference = {"field": change.field, "entry_index": entry_index, "change_index": change_index}
                for index, item in enumerate(value.user_preferences):
                    customer = _text(item.get("wa_id")) if isinstance(item, dict) else None
                    shared = {
                        "tenant_id": tenant_id, "phone_number_id": value.metadata.phone_number_id,
                        "display_phone_number": value.metadata.display_phone_number, "waba_id": entry.id,
                        "webhook_id": webhook_id, "received_at": received_at, **common_preference,
                    }  # fmt: skip
                    customer_id = customer or UNIDENTIFIED_CUSTOMER_PREFIX + value.metadata.phone_number_id
                    events.append(_event(EventKind.PREFERENCE, customer_id, item, index, len(events), shared, None))
                continue
            if change.field in TEMPLATE_FIELDS and value.metadata is None and entry.id:
                route = WABA_ROUTE_PREFIX + entry.id
                shared = {
                    "tenant_id": tenant_id, "phone_number_id": route, "display_phone_number": None,
                    "waba_id": entry.id, "field": change.field, "webhook_id": webhook_id, "received_at": received_at,
                    "entry_index": entry_index, "change_index": change_index,
                }  # fmt: skip
                raw_value = value.model_dump(exclude_none=True)
                customer_id = WABA_CUSTOMER_PREFIX + entry.id
                events.append(_event(EventKind.TEMPLATE, customer_id, raw_value, 0, len(events), shared, None))
                continue
            if change.field != MESSAGES_FIELD or not _has_events(value):
                continue
            if value.metadata is None:  # parse_webhook refuses this; a WebhookBody built by hand may not
                raise WebhookShapeError(f"entry[{entry_index}].changes[{change_index}] has no metadata")
            phone_number_id = value.metadata.phone_number_id
            common: dict[str, Any] = {
                "tenant_id": tenant_id,
                "phone_number_id": phone_number_id,
                "display_phone_number": value.metadata.display_phone_number,
                "waba_id": entry.id,
                "field": change.field,
                "webhook_id": webhook_id,
                "received_at": received_at,
                "entry_index": entry_index,
                "change_index": change_index,
            }
            contacts = _ContactIndex(value.contacts)
            for index, message in enumerate(value.messages):
                contact = contacts.for_message(message)
                customer_id = _message_customer(message, contact) or UNIDENTIFIED_CUSTOMER_PREFIX + phone_number_id
                events.append(_event(EventKind.MESSAGE, customer_id, message, index, len(events), common, contact))
            for index, status in enumerate(value.statuses):
                customer_id = _status_customer(status) or UNIDENTIFIED_CUSTOMER_PREFIX + phone_number_id
                events.append(_event(EventKind.STATUS, customer_id, status, index, len(events), common, None))
            for index, error in enumerate(value.errors):
                customer_id = BUSINESS_CUSTOMER_PREFIX + phone_number_id
                events.append(_event(EventKind.ERROR, customer_id, error, index, len(events), common, None))
    return events


def _event(
    kind: EventKind,
    customer_id: str,
    raw: Any,
    index: int,
    seq: int,
    common: dict[str, Any],
    contact: Contact | None,
) -> WebhookEvent:
    return WebhookEvent(
        kind=kind,
        customer_id=customer_id,
        key=f"{common['tenant_id']}:{customer_id}",
        contact=contact,
        event=raw,
        index=index,
        seq=seq,
        **common,
    )


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


class _ContactIndex:
    """A change's ``contacts[]``, looked up by wa_id or BSUID (a batch can hold 1000 of each)."""

    def __init__(self, raw_contacts: list[Any]) -> None:
        self._contacts = [item for item in raw_contacts if isinstance(item, dict)]
        self._by_wa_id: dict[str, dict[str, Any]] = {}
        self._by_user_id: dict[str, dict[str, Any]] = {}
        for contact in self._contacts:
            wa_id, user_id = _text(contact.get("wa_id")), _text(contact.get("user_id"))
            if wa_id:
                self._by_wa_id.setdefault(wa_id, contact)
            if user_id:
                self._by_user_id.setdefault(user_id, contact)

    def for_message(self, message: Any) -> Contact | None:
        """Matched by wa_id, else BSUID; else the only contact when nothing in it contradicts the message."""
        if not self._contacts:
            return None
        wa_id = _text(message.get("from")) if isinstance(message, dict) else None
        user_id = _text(message.get("from_user_id")) if isinstance(message, dict) else None
        found = (self._by_wa_id.get(wa_id) if wa_id else None) or (self._by_user_id.get(user_id) if user_id else None)
        if found is not None:
            return _contact(found)
        if len(self._contacts) == 1:
            only = self._contacts[0]
            contradicts = (wa_id and only.get("wa_id") and _text(only.get("wa_id")) != wa_id) or (
                user_id and only.get("user_id") and _text(only.get("user_id")) != user_id
            )
            if not contradicts:
                return _contact(only)
        return None


def _contact(raw: dict[str, Any]) -> Contact:
    profile: dict[str, Any] = raw["profile"] if isinstance(raw.get("profile"), dict) else {}
    return Contact(
        name=_text(profile.get("name")),
        wa_id=_text(raw.get("wa_id")),
        user_id=_text(raw.get("user_id")),
        parent_user_id=_text(raw.get("parent_user_id")),
        username=_text(raw.get("username")) or _text(profile.get("username")),
    )


def _message_customer(message: Any, contact: Contact | None) -> str | None:
    """wa_id when present, else the BSUID (reference: "key a customer by wa_id when present")."""
    if not isinstance(message, dict):
        return None
    return (
        _text(message.get("from"))
        or (contact.wa_id if contact else None)
        or _text(message.get("from_user_id"))
        or (contact.user_id if contact else None)
    )


def _status_customer(status: Any) -> str | None:
    if not isinstance(status, dict):
        return None
    return _text(status.get("recipient_id")) or _text(status.get("recipient_user_id"))


# -- Who the customer is ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomerIdentifiers:
    """Every identifier one event gives its customer, for the bridge's identity directory.

    ``names`` name the customer now, BSUIDs first: a BSUID belongs to one WhatsApp user, while a
    phone number can pass to someone else. ``links`` are identifiers a ``system`` message says the
    customer now also has, or had (a new phone number, a new or previous BSUID). ``first_key`` is
    the key of a customer none of these identifiers has been seen for: the wa_id, else the BSUID,
    as the key always was.
    """

    names: tuple[str, ...]
    links: tuple[str, ...]
    first_key: str

    @property
    def all(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.names, *self.links)))


def customer_identifiers(event: WebhookEvent) -> CustomerIdentifiers | None:
    """The identifiers of ``event``'s customer; None for an event of no customer (a business error,
    an event naming nobody)."""
    if event.kind in (EventKind.ERROR, EventKind.TEMPLATE) or event.customer_id.startswith(
        UNIDENTIFIED_CUSTOMER_PREFIX
    ):
        return None
    raw = event.event if isinstance(event.event, dict) else {}
    contact = event.contact
    new: list[str | None] = []
    if event.kind is EventKind.MESSAGE:
        # The message's own fields first; its contact's only where the message has none (a
        # contact that contradicts its message does not tie two identifiers together).
        bsuids = [_text(raw.get("from_user_id")) or (contact.user_id if contact else None)]
        phones = [_text(raw.get("from")) or (contact.wa_id if contact else None)]
        system = raw.get("system") if raw.get("type") == "system" else None
        if isinstance(system, dict):
            new = [_text(system.get(k)) for k in ("user_id", "previous_user_id", "wa_id", "customer")]
    elif event.kind is EventKind.STATUS:
        bsuids, phones = [_text(raw.get("recipient_user_id"))], [_text(raw.get("recipient_id"))]
    else:  # a marketing preference
        bsuids, phones = [_text(raw.get("user_id"))], [_text(raw.get("wa_id"))]
    names = tuple(
        dict.fromkeys([*(i for i in bsuids if i and is_bsuid(i)), *(i for i in phones if i and _PHONE.match(i))])
    )
    links = tuple(dict.fromkeys(i for i in new if i and (is_bsuid(i) or _PHONE.match(i)) and i not in names))
    if not names and not links:
        return None
    # A customer seen for the first time is keyed as always (the wa_id, else the BSUID), unless that
    # is no phone number or BSUID at all: then by the first identifier that is.
    fallback = [*(n for n in names if not is_bsuid(n)), *names, *links]
    first_key = event.customer_id if event.customer_id in names else fallback[0]
    return CustomerIdentifiers(names=names, links=links, first_key=first_key)


def keyed_as(event: WebhookEvent, customer_id: str) -> WebhookEvent:
    """``event`` keyed by ``customer_id`` (the identity directory's key for its customer)."""
    if customer_id == event.customer_id:
        return event
    return event.model_copy(update={"customer_id": customer_id, "key": f"{event.tenant_id}:{customer_id}"})


# -- Normalizing ------------------------------------------------------------------------------------


def normalize(
    event: WebhookEvent,
) -> InboundMessage | StatusUpdate | BusinessError | PreferenceUpdate | TemplateUpdate:
    """The typed record for a split event; ``InvalidEventError`` (with a reason) when it cannot be one."""
    if event.customer_id.startswith(UNIDENTIFIED_CUSTOMER_PREFIX):
        raise InvalidEventError(f"{event.kind.value} names no customer (no wa_id nor BSUID)", reason="no_customer_id")
    if not isinstance(event.event, dict):
        raise InvalidEventError(f"{event.kind.value} is not a JSON object", reason=f"invalid_{event.kind.value}")
    if event.kind is EventKind.MESSAGE:
        return _inbound_message(event)
    if event.kind is EventKind.STATUS:
        return _status_update(event)
    if event.kind is EventKind.PREFERENCE:
        return _preference_update(event)
    if event.kind is EventKind.TEMPLATE:
        return _template_update(event)
    return _business_error(event)


def _template_update(event: WebhookEvent) -> TemplateUpdate:
    """Meta's ``message_template_status_update`` (``event``, ``message_template_name``,
    ``message_template_language``, ``reason``) or ``template_category_update`` (``new_category``)."""
    value = event.event
    if event.waba_id is None:
        raise InvalidEventError("template update without a WABA", reason="invalid_template_update")

    def short(key: str) -> str | None:
        text = _text(value.get(key))
        return text[:512] if text else None

    return TemplateUpdate(
        tenant_id=event.tenant_id,
        customer_id=event.customer_id,
        waba_id=event.waba_id,
        field=event.field,
        template_name=short("message_template_name"),
        language=short("message_template_language"),
        status=short("event"),
        category=short("new_category") or short("category"),
        webhook_id=event.webhook_id,
        received_at=event.received_at,
    )


def _preference_update(event: WebhookEvent) -> PreferenceUpdate:
    item = event.event
    category, preference = item.get("category"), item.get("value")
    if not isinstance(category, str) or not isinstance(preference, str) or not category or not preference:
        raise InvalidEventError("user preference without category or value", reason="invalid_preference")
    try:
        timestamp = int(item.get("timestamp") or 0)
    except (TypeError, ValueError) as exc:
        raise InvalidEventError("user preference timestamp is not a number", reason="invalid_preference") from exc
    return PreferenceUpdate(
        tenant_id=event.tenant_id,
        customer_id=event.customer_id,
        category=category[:64],
        preference=preference[:64],
        timestamp=timestamp,
        detail=(_text(item.get("detail")) or "")[:200] or None,
        phone_number_id=event.phone_number_id,
        webhook_id=event.webhook_id,
        received_at=event.received_at,
    )


def _validate(model: type[_M], event: WebhookEvent) -> _M:
    try:
        return model.model_validate(event.event)
    except ValidationError as exc:
        raise InvalidEventError(
            f"invalid {event.kind.value}: {_first_error(exc)}", reason=f"invalid_{event.kind.value}"
        ) from exc


def _inbound_message(event: WebhookEvent) -> InboundMessage:
    message = _validate(MetaMessage, event)
    raw = event.event
    payload = raw.get(message.type)
    if not isinstance(payload, dict | list):
        payload = {}
    contact = event.contact
    return InboundMessage(
        wamid=message.id,
        tenant_id=event.tenant_id,
        customer_id=event.customer_id,
        wa_id=message.from_ or (contact.wa_id if contact else None),
        bsuid=message.from_user_id or (contact.user_id if contact else None),
        parent_bsuid=message.parent_user_id or (contact.parent_user_id if contact else None),
        username=message.username or (contact.username if contact else None),
        type=message.type,
        timestamp=message.timestamp,
        contact_name=contact.name if contact else None,
        phone_number_id=event.phone_number_id,
        display_phone_number=event.display_phone_number,
        waba_id=event.waba_id,
        payload=payload,
        context=message.context,
        referral=message.referral,
        errors=tuple(error.to_record() for error in message.errors),
        webhook_id=event.webhook_id,
        received_at=event.received_at,
    )


def _status_update(event: WebhookEvent) -> StatusUpdate:
    status = _validate(MetaStatus, event)
    try:
        value = MessageStatus(status.status)
    except ValueError:
        value = None
    if value is None or value not in META_STATUSES:
        raise InvalidEventError(f"unknown WhatsApp status {status.status!r}", reason="unknown_status")
    return StatusUpdate(
        wamid=status.id,
        tenant_id=event.tenant_id,
        customer_id=event.customer_id,
        recipient_id=status.recipient_id,
        recipient_bsuid=status.recipient_user_id,
        status=value,
        timestamp=status.timestamp,
        errors=tuple(error.to_record() for error in status.errors),
        conversation=status.conversation,
        pricing=status.pricing,
        biz_opaque_callback_data=status.biz_opaque_callback_data,
        phone_number_id=event.phone_number_id,
        webhook_id=event.webhook_id,
        received_at=event.received_at,
    )


def _business_error(event: WebhookEvent) -> BusinessError:
    error = _validate(MetaErrorIn, event)
    return BusinessError(
        tenant_id=event.tenant_id,
        customer_id=event.customer_id,
        phone_number_id=event.phone_number_id,
        error=error.to_record(),
        webhook_id=event.webhook_id,
        received_at=event.received_at,
    )
