"""A customer's WhatsApp message -> Genesys ``OpenInboundNormalizedMessage`` body(ies). Pure, deterministic.

Per ``reference/genesys-open-messaging.md``:
- ``channel.messageId`` is the wamid, ``channel.time`` the Meta timestamp (ISO-8601 UTC, milliseconds);
- ``channel.from`` is the customer's one key: ``{id: wa_id, idType: Phone}``, or ``{id: BSUID,
  idType: Opaque}`` for a customer first known by a username; the nickname is the profile name,
  else the username;
- media goes in ``content[].attachment`` with ``mediaType`` from the enum (never a MIME string);
- our data goes only in ``channel.metadata.customAttributes`` (string -> string), never a top-level
  ``metadata`` object.

Every WhatsApp type is rendered as text an agent understands; nothing is silently left out: media
that could not be fetched becomes a note, an unknown type says so. ``system`` events are not for the
agent (``[]``; the state stage remaps the customer).

Long text: the agent limit is 4000 characters. Text over it is split at line or word boundaries into
parts, each marked ``(part i/n)``, never cut. Part 1 keeps ``channel.messageId`` = wamid (and any
attachment); part ``i`` > 1 has ``{wamid}#part{i}`` so each POST has its own provider id, and all parts
carry ``waMessageId`` = wamid and ``waPart`` = ``i/n`` in customAttributes. Length is counted in
UTF-16 code units, the stricter of the plausible ways Genesys counts (an emoji is 2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

import orjson

from wabridge.schemas.genesys import ButtonResponseType, IdType, genesys_time
from wabridge.schemas.lenient import as_dict, as_dicts
from wabridge.schemas.meta import is_bsuid
from wabridge.schemas.records import (
    MEDIA_TYPE_BY_WHATSAPP_TYPE,
    Attachment,
    GenesysMediaType,
    InboundMessage,
    MediaUnavailable,
    MediaUnavailableReason,
    Quoted,
)

AGENT_TEXT_LIMIT = 4000
# Each of our channel.metadata.customAttributes values (and names) is cut to this many characters:
# about 20 attributes stay under 6 KB however long a headline or username is. Genesys documents no
# limit of its own for them; its request body limit is 512,000 bytes.
CUSTOM_ATTRIBUTE_MAX = 256
_PART_MARK_ROOM = 24  # "(part 99/99)\n" and then some

MEDIA_TYPES = frozenset(MEDIA_TYPE_BY_WHATSAPP_TYPE)
# Meta error codes on a message that mean its media will never come.
MEDIA_ERROR_CODES = frozenset({131052, 131053})

# WhatsApp reply -> Genesys buttonResponse.type. WhatsApp reply buttons and template quick-reply buttons
# are what Genesys quick replies become on WhatsApp; a list row is a plain button choice.
BUTTON_RESPONSE_TYPE_BY_REPLY: dict[str, ButtonResponseType] = {
    "button_reply": ButtonResponseType.QUICK_REPLY,
    "button": ButtonResponseType.QUICK_REPLY,
    "list_reply": ButtonResponseType.BUTTON,
}


class MissingAttachmentError(ValueError):
    """A media message came without its attachment and without a ``MediaUnavailable`` note.

    A bug upstream (the media step must supply one or the other): failing loudly beats an agent
    seeing a message that silently lacks its picture.
    """


# -- public API -----------------------------------------------------------------------------------


def to_open_messages(
    msg: InboundMessage,
    *,
    attachments: Sequence[Attachment] = (),
    media_unavailable: MediaUnavailable | None = None,
    custom_attributes: Mapping[str, str] | None = None,
    quoted: Quoted | None = None,
) -> list[dict[str, Any]]:
    """The ``/inbound/open/message`` bodies for ``msg``, in order (usually one; none for ``system``).

    ``custom_attributes`` (e.g. our conversation id) are added to ``channel.metadata.customAttributes``
    after the WhatsApp facts, and win on a clash.
    """
    if msg.type == "system":
        return []
    text, content = _render(msg, attachments, media_unavailable)
    if msg.type == "reaction":
        text = _render_reaction(msg, quoted)
    text = _with_envelope(msg, text, quoted)
    attributes = _custom_attributes(msg, custom_attributes)
    parts = split_text(text, AGENT_TEXT_LIMIT) if text else []
    if not parts and not content:
        # Every renderer produces text or content; this is a guard, never expected.
        parts = [f"[The customer sent a WhatsApp {msg.type} message with no content.]"]
    if len(parts) <= 1:
        return [_message_body(msg, msg.wamid, parts[0] if parts else None, content, attributes)]
    total = len(parts)
    bodies = []
    for number, part in enumerate(parts, start=1):
        message_id = msg.wamid if number == 1 else f"{msg.wamid}#part{number}"
        part_attributes = {**attributes, "waPart": f"{number}/{total}"}
        bodies.append(
            _message_body(
                msg, message_id, f"(part {number}/{total})\n{part}", content if number == 1 else [], part_attributes
            )
        )
    return bodies


def to_open_message(
    msg: InboundMessage,
    *,
    attachments: Sequence[Attachment] = (),
    media_unavailable: MediaUnavailable | None = None,
    custom_attributes: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """The single body for ``msg`` (None for ``system``); ``ValueError`` if it needs several parts.

    The deliver stage should call ``to_open_messages``; this is for callers that know the message is short.
    """
    bodies = to_open_messages(
        msg, attachments=attachments, media_unavailable=media_unavailable, custom_attributes=custom_attributes
    )
    if len(bodies) > 1:
        raise ValueError(f"message {msg.wamid} needs {len(bodies)} parts: use to_open_messages")
    return bodies[0] if bodies else None


PREVIEW_CHARS = 100


def preview(msg: InboundMessage) -> str:
    """What ``msg`` said in a line (its first 100 characters), for a later reply that quotes it."""
    if msg.type in MEDIA_TYPES:
        caption = _s(as_dict(msg.payload).get("caption"))
        text = f"[{_media_label(msg).lower()}] {caption}".strip()
    else:
        renderer = _RENDERERS.get(msg.type)
        text = renderer(msg) if renderer is not None else f"[{msg.type}]"
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def reply_choice(msg: InboundMessage) -> tuple[ButtonResponseType, str, str] | None:
    """``(type, text, payload)`` when ``msg`` is a button or list choice, else None."""
    payload = as_dict(msg.payload)
    if msg.type == "button":
        text = _s(payload.get("text"))
        return ButtonResponseType.QUICK_REPLY, text, _s(payload.get("payload")) or text
    if msg.type == "interactive":
        reply_kind = _s(payload.get("type"))
        reply = payload.get(reply_kind)
        if reply_kind in BUTTON_RESPONSE_TYPE_BY_REPLY and isinstance(reply, dict):
            text = _s(reply.get("title"))
            return BUTTON_RESPONSE_TYPE_BY_REPLY[reply_kind], text, _s(reply.get("id")) or text
    return None


def to_structured_response(msg: InboundMessage, *, originating_message_id: str) -> dict[str, Any] | None:
    """``/inbound/open/structured/response`` body for a button/list choice answering a known Genesys message.

    ``originating_message_id`` is the Genesys id of the agent's message that offered the choice
    (``ConversationRef.originating_message_id``). None when ``msg`` is not such a choice.
    """
    choice = reply_choice(msg)
    if choice is None or not originating_message_id:
        return None
    response_type, text, payload = choice
    return {
        "channel": {"from": _from(msg), "time": genesys_time(msg.timestamp), "messageId": msg.wamid},
        "buttonResponse": {"type": response_type.value, "text": text, "payload": payload},
        "originatingMessageId": originating_message_id,
    }


def split_text(text: str, limit: int = AGENT_TEXT_LIMIT) -> list[str]:
    """``text`` in parts of at most ``limit`` UTF-16 units (room left for a part mark when split).

    Cuts at the last newline, else the last space, in the second half of a part; else hard. Nothing is
    dropped: joining the parts with the separators they were cut at gives back ``text``.
    """
    if _utf16_len(text) <= limit:
        return [text]
    budget = limit - _PART_MARK_ROOM
    parts: list[str] = []
    rest = text
    while _utf16_len(rest) > budget:
        cut = _cut_index(rest, budget)
        head = rest[:cut]
        boundary = max(head.rfind("\n"), head.rfind(" "))
        if boundary >= cut // 2:
            parts.append(rest[:boundary])
            rest = rest[boundary + 1 :]
        else:
            parts.append(head)
            rest = rest[cut:]
    if rest:
        parts.append(rest)
    return parts


# -- the body -------------------------------------------------------------------------------------


def _message_body(
    msg: InboundMessage,
    message_id: str,
    text: str | None,
    content: list[dict[str, Any]],
    attributes: dict[str, str],
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "channel": {
            "messageId": message_id,
            "time": genesys_time(msg.timestamp),
            "from": _from(msg),
            "metadata": {"customAttributes": attributes},
        }
    }
    if text:
        body["text"] = text
    if content:
        body["content"] = content
    return body


def _from(msg: InboundMessage) -> dict[str, str]:
    """The customer as Genesys knows them: their one key (the bridge's ``connectors.identities``),
    so a customer who adopts a username, or changes number, stays in the same Genesys thread.
    ``Phone`` for a phone number, ``Opaque`` for a BSUID."""
    if not msg.customer_id:
        raise ValueError(f"message {msg.wamid} names no customer")
    kind = IdType.OPAQUE if is_bsuid(msg.customer_id) else IdType.PHONE
    recipient = {"id": msg.customer_id, "idType": kind.value}
    nickname = msg.contact_name or msg.username
    if nickname:
        recipient["nickname"] = nickname
    if msg.contact_name:
        first, _, last = msg.contact_name.strip().partition(" ")
        if first:
            recipient["firstName"] = first
        if last.strip():
            recipient["lastName"] = last.strip()
    return recipient


def _custom_attributes(msg: InboundMessage, extra: Mapping[str, str] | None) -> dict[str, str]:
    attributes: dict[str, str] = {
        "tenantId": msg.tenant_id,
        "waMessageId": msg.wamid,
        "waType": msg.type,
        "waPhoneNumberId": msg.phone_number_id,
    }
    optional = {
        "waDisplayPhoneNumber": msg.display_phone_number,
        "waId": msg.wa_id,
        "waUserId": msg.bsuid,
        "waUsername": msg.username,
        "waContextMessageId": msg.context_message_id,
    }
    payload = as_dict(msg.payload)
    if msg.type == "audio":
        optional["waVoice"] = "true" if payload.get("voice") else None
    choice = reply_choice(msg)
    if choice is not None:
        optional["waReplyPayload"] = choice[2]
    context = msg.context or {}
    if context.get("frequently_forwarded"):
        optional["waForwarded"] = "frequently"
    elif context.get("forwarded"):
        optional["waForwarded"] = "true"
    referral = msg.referral or {}
    for key, name in (
        ("source_url", "waReferralSourceUrl"),
        ("source_id", "waReferralSourceId"),
        ("source_type", "waReferralSourceType"),
        ("headline", "waReferralHeadline"),
        ("ctwa_clid", "waReferralCtwaClid"),
    ):
        optional[name] = _s(referral.get(key)) or None
    attributes.update({key: value for key, value in optional.items() if value})
    if extra:
        attributes.update({str(key): str(value) for key, value in extra.items()})
    return {key[:CUSTOM_ATTRIBUTE_MAX]: _bounded(value) for key, value in attributes.items()}


def _bounded(value: str) -> str:
    """A routing value within ``CUSTOM_ATTRIBUTE_MAX`` characters: a customer's ad headline or a
    hostile username must not make the message too large for Genesys."""
    return value if len(value) <= CUSTOM_ATTRIBUTE_MAX else value[: CUSTOM_ATTRIBUTE_MAX - 1] + "…"


# -- rendering ------------------------------------------------------------------------------------


def _render(
    msg: InboundMessage, attachments: Sequence[Attachment], unavailable: MediaUnavailable | None
) -> tuple[str, list[dict[str, Any]]]:
    """(text, content) for the message itself, before reply / forward / ad notes."""
    if msg.type in MEDIA_TYPES:
        return _render_media(msg, attachments, unavailable)
    renderer = _RENDERERS.get(msg.type)
    if renderer is None:
        return _render_unknown(msg), []
    return renderer(msg), []


def _render_media(
    msg: InboundMessage, attachments: Sequence[Attachment], unavailable: MediaUnavailable | None
) -> tuple[str, list[dict[str, Any]]]:
    payload = as_dict(msg.payload)
    caption = _s(payload.get("caption"))
    label = _media_label(msg)
    if attachments:
        content = [_attachment(attachment, caption) for attachment in attachments]
        text = caption
        if msg.type == "sticker" or (msg.type == "audio" and payload.get("voice")):
            text = f"[{label}]" if not caption else f"[{label}] {caption}"
        return text, content
    if unavailable is None:
        errors = [error for error in msg.errors if error.code in MEDIA_ERROR_CODES] or list(msg.errors)
        if not errors:
            raise MissingAttachmentError(f"{msg.type} message {msg.wamid} has neither attachment nor a note")
        error = errors[0]
        unavailable = MediaUnavailable(
            reason=MediaUnavailableReason.META_ERROR,
            detail=f"WhatsApp error {error.code}: {error.title or error.message or 'unknown error'}"
            + (f" ({error.details})" if error.details else ""),
        )
    return _unavailable_note(label, payload, caption, unavailable), []


_UNAVAILABLE_REASONS: dict[MediaUnavailableReason, str] = {
    MediaUnavailableReason.TOO_LARGE: "it is too large to pass on",
    MediaUnavailableReason.EXPIRED: "it has expired on WhatsApp",
    MediaUnavailableReason.META_ERROR: "WhatsApp could not provide it",
    MediaUnavailableReason.CHECKSUM_MISMATCH: "the downloaded file was corrupt",
    MediaUnavailableReason.DOWNLOAD_FAILED: "it could not be downloaded",
}


def _unavailable_note(label: str, payload: dict[str, Any], caption: str, unavailable: MediaUnavailable) -> str:
    filename = unavailable.filename or _s(payload.get("filename"))
    described = f"{_article(label)} {label.lower()}" + (f' "{filename}"' if filename else "")
    facts = [_UNAVAILABLE_REASONS[unavailable.reason]]
    if unavailable.size is not None:
        facts.append(f"{_human_size(unavailable.size)}")
    mime = unavailable.mime or _s(payload.get("mime_type"))
    if mime:
        facts.append(mime)
    note = f"[The customer sent {described}, but it cannot be shown here: {', '.join(facts)}."
    if unavailable.detail:
        note += f" {unavailable.detail.rstrip('.')}."
    note += " Ask the customer to send it again or another way if you need it.]"
    if caption:
        note += f"\nCaption: {caption}"
    return note


def _attachment(attachment: Attachment, caption: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "mediaType": GenesysMediaType(attachment.media_type).value,
        "url": attachment.url,
        "mime": attachment.mime,
    }
    if attachment.filename:
        body["filename"] = attachment.filename
    if attachment.sha256:
        body["sha256"] = attachment.sha256
    if caption:
        body["text"] = caption
    return {"attachment": body}


def _media_label(msg: InboundMessage) -> str:
    payload = as_dict(msg.payload)
    if msg.type == "audio":
        return "Voice message" if payload.get("voice") else "Audio"
    if msg.type == "sticker":
        return "Animated sticker" if payload.get("animated") else "Sticker"
    return {"image": "Image", "video": "Video", "document": "Document"}[msg.type]


def _render_text(msg: InboundMessage) -> str:
    payload = as_dict(msg.payload)
    return _s(payload.get("body"))


def _render_location(msg: InboundMessage) -> str:
    payload = as_dict(msg.payload)
    latitude, longitude = payload.get("latitude"), payload.get("longitude")
    lines = ["📍 Location shared by the customer"]
    if payload.get("name"):
        lines.append(_s(payload["name"]))
    if payload.get("address"):
        lines.append(_s(payload["address"]))
    if latitude is not None and longitude is not None:
        lines.append(f"Coordinates: {latitude}, {longitude}")
        query = quote(f"{latitude},{longitude}", safe=",")
        lines.append(f"Map: https://www.google.com/maps/search/?api=1&query={query}")
    if payload.get("url"):
        lines.append(f"Link: {_s(payload['url'])}")
    return "\n".join(lines)


def _render_contacts(msg: InboundMessage) -> str:
    cards = msg.payload if isinstance(msg.payload, list) else [msg.payload]
    blocks = []
    for card in cards:
        if not isinstance(card, dict):
            continue
        name = as_dict(card.get("name"))
        full_name = _s(name.get("formatted_name")) or " ".join(
            _s(name.get(part)) for part in ("first_name", "middle_name", "last_name") if name.get(part)
        )
        lines = [f"👤 {full_name or 'Contact without a name'}"]
        org = as_dict(card.get("org"))
        org_text = ", ".join(_s(org.get(key)) for key in ("title", "department", "company") if org.get(key))
        if org_text:
            lines.append(f"Organization: {org_text}")
        for phone in as_dicts(card.get("phones")):
            label = f" ({_s(phone.get('type'))})" if phone.get("type") else ""
            on_whatsapp = " - on WhatsApp" if phone.get("wa_id") else ""
            lines.append(f"Phone{label}: {_s(phone.get('phone') or phone.get('wa_id'))}{on_whatsapp}")
        for email in as_dicts(card.get("emails")):
            label = f" ({_s(email.get('type'))})" if email.get("type") else ""
            lines.append(f"Email{label}: {_s(email.get('email'))}")
        for address in as_dicts(card.get("addresses")):
            parts = [address.get(key) for key in ("street", "city", "state", "zip", "country")]
            label = f" ({_s(address.get('type'))})" if address.get("type") else ""
            lines.append(f"Address{label}: {', '.join(_s(part) for part in parts if part)}")
        for url in as_dicts(card.get("urls")):
            lines.append(f"Web: {_s(url.get('url'))}")
        if card.get("birthday"):
            lines.append(f"Birthday: {_s(card['birthday'])}")
        blocks.append("\n".join(lines))
    count = len(blocks)
    header = "The customer shared a contact:" if count == 1 else f"The customer shared {count} contacts:"
    return header + "\n" + "\n\n".join(blocks)


def _render_interactive(msg: InboundMessage) -> str:
    payload = as_dict(msg.payload)
    kind = _s(payload.get("type"))
    reply = as_dict(payload.get(kind))
    if kind == "button_reply":
        return f"Selected button: {_s(reply.get('title'))}"
    if kind == "list_reply":
        text = f"Selected from list: {_s(reply.get('title'))}"
        if reply.get("description"):
            text += f" - {_s(reply['description'])}"
        return text
    if kind == "nfm_reply":
        return _render_flow_reply(reply)
    return f"[The customer answered an interactive message ({kind or 'unknown kind'}); it cannot be shown here.]"


def _render_flow_reply(reply: dict[str, Any]) -> str:
    title = _s(reply.get("body")) or "Form submitted"
    lines = [f"📝 {title}"]
    if reply.get("name") and reply.get("name") != "flow":
        lines[0] += f" ({_s(reply['name'])})"
    raw = reply.get("response_json")
    try:
        answers = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    except orjson.JSONDecodeError:
        answers = None
    if isinstance(answers, dict):
        for key, value in answers.items():
            if key == "flow_token":  # WhatsApp's bookkeeping, not an answer
                continue
            lines.append(f"- {_field_label(key)}: {_value_text(value)}")
    elif raw:
        lines.append(_s(raw))
    return "\n".join(lines)


def _render_button(msg: InboundMessage) -> str:
    payload = as_dict(msg.payload)
    return f"Selected button: {_s(payload.get('text') or payload.get('payload'))}"


def _render_reaction(msg: InboundMessage, quoted: Quoted | None = None) -> str:
    payload = as_dict(msg.payload)
    emoji = _s(payload.get("emoji"))
    target = _earlier(quoted, _s(payload.get("message_id")) or "unknown")
    if emoji:
        return f"Reacted {emoji} to {target}"
    return f"Removed their reaction from {target}"


def _earlier(quoted: Quoted | None, wamid: str) -> str:
    """The earlier message as the agent reads it: whose and what it said, else its WhatsApp id."""
    if quoted is None:
        return f"an earlier message (WhatsApp message id {wamid})"
    whose = "your message" if quoted.by_agent else "their earlier message"
    return f'{whose} "{quoted.preview}"' if quoted.preview else whose


def _render_request_welcome(_: InboundMessage) -> str:
    return "[The customer opened the chat with you on WhatsApp. They have not written anything yet.]"


def _render_order(msg: InboundMessage) -> str:
    payload = as_dict(msg.payload)
    lines = ["🛒 Order from the customer"]
    if payload.get("catalog_id"):
        lines[0] += f" (catalog {_s(payload['catalog_id'])})"
    totals: dict[str, Decimal] = {}
    for item in as_dicts(payload.get("product_items")):
        quantity = _decimal(item.get("quantity"))
        price = _decimal(item.get("item_price"))
        currency = _s(item.get("currency"))
        line = f"- {_number(quantity) if quantity is not None else '?'} x {_s(item.get('product_retailer_id'))}"
        if price is not None:
            line += f" at {_money(price)} {currency}".rstrip()
            if quantity is not None:
                subtotal = price * quantity
                line += f" = {_money(subtotal)} {currency}".rstrip()
                totals[currency] = totals.get(currency, Decimal(0)) + subtotal
        lines.append(line)
    for currency, total in totals.items():
        lines.append(f"Total: {_money(total)} {currency}".rstrip())
    if payload.get("text"):
        lines.append(f"Note: {_s(payload['text'])}")
    return "\n".join(lines)


def _render_unsupported(msg: InboundMessage) -> str:
    payload = as_dict(msg.payload)
    kind = _s(payload.get("type"))
    what = f"a {kind} message" if kind else "a message"
    text = f"[The customer sent {what} that WhatsApp cannot deliver to this channel"
    if msg.errors:
        error = msg.errors[0]
        text += f": {error.title or error.message or 'unsupported'} (error {error.code})"
        if error.details:
            text += f" - {error.details.rstrip('.')}"
    return text + ". Ask the customer to send it another way if needed.]"


def _render_unknown(msg: InboundMessage) -> str:
    return (
        f"[The customer sent a WhatsApp message of type '{msg.type}', which this bridge cannot display. "
        "Ask the customer to send it another way if needed.]"
    )


_RENDERERS = {
    "text": _render_text,
    "location": _render_location,
    "contacts": _render_contacts,
    "interactive": _render_interactive,
    "button": _render_button,
    "reaction": _render_reaction,
    "request_welcome": _render_request_welcome,
    "order": _render_order,
    "unsupported": _render_unsupported,
}


def _with_envelope(msg: InboundMessage, text: str, quoted: Quoted | None = None) -> str:
    """Reply, forward, product and ad facts around the message text."""
    context = msg.context or {}
    before: list[str] = []
    if context.get("frequently_forwarded"):
        before.append("[Forwarded many times]")
    elif context.get("forwarded"):
        before.append("[Forwarded]")
    if context.get("id") and msg.type != "reaction":
        before.append(f"[In reply to {_earlier(quoted, _s(context['id']))}]")
    product = context.get("referred_product")
    if isinstance(product, dict):
        before.append(
            f"[Asking about product {_s(product.get('product_retailer_id'))}"
            + (f" from catalog {_s(product.get('catalog_id'))}" if product.get("catalog_id") else "")
            + "]"
        )
    after: list[str] = []
    referral = msg.referral or {}
    if referral:
        facts = [f'"{_s(referral["headline"])}"' if referral.get("headline") else "an ad"]
        if referral.get("body"):
            facts.append(_s(referral["body"]))
        if referral.get("source_url"):
            facts.append(_s(referral["source_url"]))
        for media in ("image_url", "video_url", "thumbnail_url"):
            if referral.get(media) and (media != "thumbnail_url" or not referral.get("video_url")):
                facts.append(f"{media.split('_')[0]}: {_s(referral[media])}")
        source = _s(referral.get("source_type")) or "ad"
        after.append(f"[The customer came from {_article(source)} {source}: {' - '.join(facts)}]")
    return "\n".join([*before, *([text] if text else []), *after])


# -- small helpers --------------------------------------------------------------------------------


def _s(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _number(value: Decimal) -> str:
    """A quantity: ``2`` not ``2.0``; a fraction as given."""
    if value == value.to_integral_value():
        return str(value.quantize(Decimal(1)))
    return format(value.normalize(), "f")


def _money(value: Decimal) -> str:
    """Prices and totals with cents: ``12.50``, ``25.00``."""
    return str(value.quantize(Decimal("0.01")))


def _field_label(key: str) -> str:
    label = key.replace("_", " ").strip()
    return label[:1].upper() + label[1:] if label else key


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_value_text(item) for item in value)
    if isinstance(value, dict):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return _s(value)


def _article(label: str) -> str:
    return "an" if label[:1].lower() in "aeiou" else "a"


def _human_size(size: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _cut_index(text: str, budget: int) -> int:
    """The largest index such that ``text[:index]`` fits ``budget`` UTF-16 units."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > budget:
            return index
    return len(text)
