"""An agent's message as the WhatsApp messages that carry it (pure: no I/O).

:func:`whatsapp_parts` turns an ``OutboundEvent`` into ``Part`` s, sent in order, each once
(the outbound stage brackets each by its index). What WhatsApp can show is used; what it cannot
is rendered as text, never dropped:

* **Text** is split at WhatsApp's 4096 characters (``text_parts``).
* **Attachments** become image / video / audio / document messages by their MIME type (WhatsApp
  takes images as JPEG or PNG only, video as MP4 or 3GPP, audio as AAC, AMR, MP3, MP4 or OGG:
  anything else goes as a document, which takes any type). With one attachment that takes a
  caption (image, video, document) and text up to 1024 characters, the text is its caption;
  otherwise the text goes first. The stage fetches the file and fills in ``{id}`` or ``{link}``.
  A Genesys ``Link`` attachment is sent as its URL in text.
* **Quick replies** become interactive reply buttons when WhatsApp's limits allow (1 to 3 buttons,
  titles up to 20 characters, ids up to 256, body up to 1024); otherwise a list message (up to 10
  rows in up to 10 sections, titles up to 24, descriptions up to 72, ids up to 200, body up to
  4096); beyond that, text with numbered choices (the customer answers with the number or the
  words, which the agent reads as text). A **list picker** goes the list (or numbered) way.
  Limits: Meta's "Interactive reply buttons messages" and "Interactive list messages" pages
  (developers.facebook.com/documentation/business-messaging/whatsapp/messages/, checked 2026-12).
  A list picker keeps the prompt the agent wrote: its title is the list's header, its button label
  the list's button (cut to Meta's 60 and 20 characters with an ellipsis, never refused).
* A **Notification** (Genesys's template content) is a WhatsApp template send: Genesys's
  ``namespace@name`` becomes Meta's ``name``, its language Meta's code; a Text header's parameters
  as text, a Media header as an image, video or document parameter (the stage fetches the file like
  an attachment), the body's parameters, and each button's: a quick reply's payload, a URL
  button's suffix (Meta's "Send template messages": ``header``, ``body`` and ``button``
  components with ``sub_type`` and ``index``). The only kind allowed outside the 24-hour window.

Where it goes: :func:`whatsapp_address`, a phone number in ``to`` or a BSUID in ``recipient``.

Content WhatsApp has no form for (cards, carousels, date pickers…) is ``Unsendable``: the agent
gets a ``Failed`` receipt (``UnsupportedMessage``) naming it, rather than a message that silently
lost part of what they wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wabridge.connectors.meta_graph import text_parts
from wabridge.errors import PermanentError
from wabridge.schemas.genesys import Choice, ChoiceKind, OutboundAttachment, OutboundEvent, ReasonCode, Template
from wabridge.schemas.meta import is_bsuid

BUTTONS_MAX = 3
BUTTON_TITLE_MAX = 20
BUTTON_ID_MAX = 256
BUTTON_BODY_MAX = 1024
LIST_ROWS_MAX = 10
LIST_SECTIONS_MAX = 10
LIST_TITLE_MAX = 24
LIST_DESCRIPTION_MAX = 72
LIST_ID_MAX = 200
LIST_BODY_MAX = 4096
LIST_BUTTON_LABEL = "Choose"
LIST_BUTTON_MAX = 20
LIST_HEADER_MAX = 60
CAPTION_MAX = 1024
DEFAULT_PROMPT = "Please choose:"

# Meta's media types and what each takes (reference: Media, size caps; "Supported media types").
IMAGE_MIMES = frozenset({"image/jpeg", "image/png"})
VIDEO_MIMES = frozenset({"video/mp4", "video/3gpp"})
AUDIO_MIMES = frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"})
SIZE_CAPS = {"image": 5 * 1024 * 1024, "video": 16 * 1024 * 1024, "audio": 16 * 1024 * 1024}
DOCUMENT_CAP = 100 * 1024 * 1024
CAPTIONED = frozenset({"image", "video", "document"})

# Genesys content types that are carried by the fields above (the rest have no WhatsApp form).
_CARRIED = frozenset({"", "Attachment", "QuickReply", "QuickReplyV2", "ListPicker", "Notification", "Text"})


class Unsendable(PermanentError):
    """Nothing WhatsApp can show carries this message as the agent meant it."""

    def __init__(self, message: str, *, code: ReasonCode = ReasonCode.UNSUPPORTED_MESSAGE) -> None:
        super().__init__(message, reason="outbound_unsupported")
        self.code = code


@dataclass(frozen=True, slots=True)
class Part:
    """One WhatsApp message: the send body after ``messaging_product`` and ``to``."""

    message: dict[str, Any]
    preview: str  # a short description (tracking, and what a customer's reply quotes)
    attachment: OutboundAttachment | None = None  # to fetch; ``message[type]`` then gets id or link
    template: bool = False  # may be sent outside the 24-hour window
    # For a template with a media header: its kind (image, video, document); the fetched file's
    # id or link goes into the header parameter instead of ``message[type]``.
    header_kind: str | None = None


def whatsapp_address(customer_id: str, wa_id: str | None = None) -> dict[str, str]:
    """Where a send to the customer goes: ``{"to": phone}`` when their phone number is known (the
    conversation's ``wa_id``, else a customer id that is one), else ``{"recipient": BSUID}``. Meta
    takes a BSUID only in ``recipient``; in ``to`` it is not delivered (Meta, "Business-scoped user
    IDs", reference ``whatsapp-cloud-api.md``)."""
    for candidate in (wa_id, customer_id):
        if candidate and not is_bsuid(candidate):
            return {"to": candidate}
    return {"recipient": customer_id}


def addressed_by_bsuid(address: dict[str, str]) -> bool:
    return "recipient" in address


def whatsapp_kind(mime: str | None) -> str:
    """The WhatsApp message type that takes a file of this MIME type (document takes any)."""
    base = (mime or "").split(";", 1)[0].strip().lower()
    if base in IMAGE_MIMES:
        return "image"
    if base in VIDEO_MIMES:
        return "video"
    if base in AUDIO_MIMES:
        return "audio"
    return "document"


def fitting_kind(kind: str, size: int) -> str:
    """``kind``, or document when the file is over that kind's cap (a 7 MB photo still arrives)."""
    return "document" if size > SIZE_CAPS.get(kind, DOCUMENT_CAP) else kind


def whatsapp_parts(outbound: OutboundEvent) -> list[Part]:
    """The parts that carry ``outbound``, in order; ``Unsendable`` if WhatsApp cannot carry it."""
    unknown = sorted({kind for kind in outbound.content_types if kind not in _CARRIED})
    if unknown:
        raise Unsendable(f"WhatsApp has no form for {', '.join(unknown)} content")
    if outbound.template is not None:
        return [_template_part(outbound)]
    text = (outbound.text or "").strip()
    if outbound.choices:
        return _choice_parts(outbound, text)
    files = [a for a in outbound.attachments if (a.media_type or "").lower() != "link"]
    links = [a.url for a in outbound.attachments if (a.media_type or "").lower() == "link"]
    if links:
        text = "\n".join([text, *links]) if text else "\n".join(links)
    if not files:
        return _text_parts(text)
    kinds = [whatsapp_kind(a.mime) for a in files]
    if len(files) == 1 and kinds[0] in CAPTIONED and 0 < len(text) <= CAPTION_MAX:
        return [_media_part(files[0], kinds[0], caption=text)]
    return [*_text_parts(text), *(_media_part(a, kind) for a, kind in zip(files, kinds, strict=True))]


def _text_parts(text: str) -> list[Part]:
    return [Part({"type": "text", "text": {"body": body}}, preview=body) for body in text_parts(text) if body]


def _media_part(attachment: OutboundAttachment, kind: str, caption: str = "") -> Part:
    payload: dict[str, Any] = {}
    if caption:
        payload["caption"] = caption
    if kind == "document" and attachment.filename:
        payload["filename"] = attachment.filename
    described = f"[{kind}{': ' + attachment.filename if attachment.filename else ''}]"
    return Part({"type": kind, kind: payload}, preview=f"{described} {caption}".strip(), attachment=attachment)


def _template_part(outbound: OutboundEvent) -> Part:
    template = outbound.template
    assert template is not None
    components: list[dict[str, Any]] = []
    header_kind = _header_kind(template)
    if header_kind is not None:
        components.append({"type": "header", "parameters": [{"type": header_kind, header_kind: {}}]})
    elif template.header_parameters:
        parameters = [{"type": "text", "text": text} for text in template.header_parameters]
        components.append({"type": "header", "parameters": parameters})
    if template.body_parameters:
        parameters = [{"type": "text", "text": text} for text in template.body_parameters]
        components.append({"type": "body", "parameters": parameters})
    components += _button_components(template)
    body: dict[str, Any] = {"name": template.name, "language": {"code": template.language}}
    if components:
        body["components"] = components
    preview = template.body_text or outbound.text or f"[template {template.name}]"
    message = {"type": "template", "template": body}
    return Part(message, preview=preview, template=True, attachment=template.header_media, header_kind=header_kind)


def _header_kind(template: Template) -> str | None:
    """image, video or document for a Media header (by Genesys's mediaType, else the MIME type)."""
    media = template.header_media
    if media is None:
        return None
    by_type = {"image": "image", "video": "video", "file": "document", "document": "document"}
    return by_type.get((media.media_type or "").lower()) or whatsapp_kind(media.mime)


def _button_components(template: Template) -> list[dict[str, Any]]:
    """Meta's ``button`` components: a quick reply's payload, a URL button's suffix parameters.
    A button without parameters (a phone number, a static URL) is not named: Meta fills it in."""
    components: list[dict[str, Any]] = []
    for button in template.buttons:
        kind = button.type.lower()
        if kind == "quickreply" and button.payload:
            parameters = [{"type": "payload", "payload": button.payload}]
            components.append(
                {"type": "button", "sub_type": "quick_reply", "index": button.index, "parameters": parameters}
            )
        elif kind == "url" and button.parameters:
            parameters = [{"type": "text", "text": text} for text in button.parameters]
            components.append({"type": "button", "sub_type": "url", "index": button.index, "parameters": parameters})
    return components


def _choice_parts(outbound: OutboundEvent, text: str) -> list[Part]:
    choices = outbound.choices
    # A list picker's title is its header; quick replies' title stands in for missing text.
    header = outbound.choices_title if outbound.choice_kind is ChoiceKind.LIST_PICKER else None
    prompt = text or (None if header else outbound.choices_title) or DEFAULT_PROMPT
    summary = " | ".join(choice.title for choice in choices)
    preview = f"{prompt} [{summary}]"
    if outbound.choice_kind is ChoiceKind.QUICK_REPLY and _fits_buttons(prompt, choices):
        buttons = [{"type": "reply", "reply": {"id": c.payload, "title": c.title}} for c in choices]
        interactive = {"type": "button", "body": {"text": prompt}, "action": {"buttons": buttons}}
        message = {"type": "interactive", "interactive": interactive}
        return [Part(message, preview=preview)]
    sections = _list_sections(choices)
    if sections is not None and 0 < len(prompt) <= LIST_BODY_MAX:
        label = _fit(outbound.choices_button or LIST_BUTTON_LABEL, LIST_BUTTON_MAX)
        listed: dict[str, Any] = {
            "type": "list",
            "body": {"text": prompt},
            "action": {"button": label, "sections": sections},
        }
        if header:
            listed["header"] = {"type": "text", "text": _fit(header, LIST_HEADER_MAX)}
        return [Part({"type": "interactive", "interactive": listed}, preview=preview)]
    lines = [header, prompt, ""] if header else [prompt, ""]
    for number, choice in enumerate(choices, start=1):
        lines.append(f"{number}. {choice.title}" + (f" - {choice.description}" if choice.description else ""))
    lines += ["", "Reply with the number of your choice."]
    return _text_parts("\n".join(lines))


def _fit(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, cut with an ellipsis when longer."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _fits_buttons(prompt: str, choices: tuple[Choice, ...]) -> bool:
    return (
        1 <= len(choices) <= BUTTONS_MAX
        and 0 < len(prompt) <= BUTTON_BODY_MAX
        and all(len(c.title) <= BUTTON_TITLE_MAX and len(c.payload) <= BUTTON_ID_MAX for c in choices)
        and len({c.payload for c in choices}) == len(choices)
    )


def _list_sections(choices: tuple[Choice, ...]) -> list[dict[str, Any]] | None:
    """The list message's sections, or None when the choices exceed its limits."""
    if not 1 <= len(choices) <= LIST_ROWS_MAX or len({c.payload for c in choices}) != len(choices):
        return None
    if any(
        len(c.title) > LIST_TITLE_MAX
        or len(c.payload) > LIST_ID_MAX
        or len(c.description or "") > LIST_DESCRIPTION_MAX
        or len(c.section or "") > LIST_TITLE_MAX
        for c in choices
    ):
        return None
    sections: list[dict[str, Any]] = []
    for choice in choices:
        if not sections or sections[-1].get("title", "") != (choice.section or ""):
            sections.append({"title": choice.section or "", "rows": []})
        row: dict[str, Any] = {"id": choice.payload, "title": choice.title}
        if choice.description:
            row["description"] = choice.description
        sections[-1]["rows"].append(row)
    if len(sections) > LIST_SECTIONS_MAX:
        return None
    if len(sections) == 1 and not sections[0]["title"]:
        del sections[0]["title"]  # a single section needs no title
    elif any(not section["title"] for section in sections):
        return None  # WhatsApp requires titles when there are several sections
    return sections
