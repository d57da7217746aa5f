"""The customer side of WhatsApp: inbound webhooks of every message type, signed as Meta signs them.

``build_message`` and ``build_webhook`` are pure (the shapes of ``reference/whatsapp-cloud-api.md``);
``sign_webhook`` and ``post_webhook`` sign and send exact bytes. ``CustomerDriver`` asks a running Meta
simulator to do it all, so the media ids in the webhooks are fetchable from that simulator and the
customer's 24-hour window opens there too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field

from wabridge.simulators.hosting import SimulatorRequestError

MESSAGE_KINDS = (
    "text",
    "image",
    "video",
    "audio",
    "voice",
    "document",
    "sticker",
    "location",
    "contacts",
    "button_reply",
    "list_reply",
    "flow_reply",
    "request_welcome",
    "template_button",
    "reaction",
    "unreaction",
    "order",
    "system_number_change",
    "system_user_id_change",
    "unsupported",
)
MEDIA_KINDS = ("image", "video", "audio", "voice", "document", "sticker")
# Meta's webhook JSON escapes non-ASCII (\u00e9) and slashes (\/); "utf8" sends raw UTF-8 instead.
JsonStyle = Literal["utf8", "meta_escaped"]


class InboundSpec(BaseModel):
    """One customer message to generate. Only ``kind`` is required."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = Field(pattern="^(" + "|".join(MESSAGE_KINDS) + ")$")
    wa_id: str = "16505551234"
    name: str = "Sheena Nelson"
    # Business-scoped user id (BSUID); ``bsuid_only`` drops wa_id/from as for users with a username.
    user_id: str | None = None
    username: str | None = None
    bsuid_only: bool = False
    text: str | None = None  # body of a text, caption of media, comment of an order
    reply_to: str | None = None  # wamid the customer replies to (context)
    forwarded: bool = False
    frequently_forwarded: bool = False
    ad_referral: bool = False
    reacted_message_id: str | None = None  # for reaction / unreaction
    # For button_reply / list_reply: the id and title of the choice tapped (with ``reply_to``, the
    # wamid of the business's interactive message, as WhatsApp sends it in ``context``).
    choice_id: str | None = None
    choice_title: str | None = None
    new_wa_id: str | None = None  # for system_number_change
    new_user_id: str | None = None  # for system_user_id_change: the BSUID that replaces ``user_id``
    wamid: str | None = None
    timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class MediaRef:
    """A media object the webhook points at (already stored where the bridge will fetch it)."""

    id: str
    mime_type: str
    sha256_b64: str
    filename: str


def new_wamid() -> str:
    return "wamid.HBgL" + base64.b64encode(secrets.token_bytes(27)).decode()


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _media_payload(spec: InboundSpec, media: MediaRef) -> dict[str, Any]:
    payload: dict[str, Any] = {"id": media.id, "mime_type": media.mime_type, "sha256": media.sha256_b64}
    if spec.kind in ("image", "video", "document") and spec.text:
        payload["caption"] = spec.text
    if spec.kind in ("audio", "voice"):
        payload["voice"] = spec.kind == "voice"
    if spec.kind == "document":
        payload["filename"] = media.filename
    if spec.kind == "sticker":
        payload["animated"] = False
    return payload


def _typed_payload(spec: InboundSpec) -> tuple[str, dict[str, Any]]:
    """The ``type`` and its payload for the non-media kinds."""
    kind = spec.kind
    if kind == "text":
        return "text", {"text": {"body": spec.text or "Hello"}}
    if kind == "location":
        return "location", {
            "location": {
                "latitude": 38.8977,
                "longitude": -77.0365,
                "name": "Main office",
                "address": "1600 Pennsylvania Ave",
            }
        }
    if kind == "contacts":
        return "contacts", {
            "contacts": [
                {
                    "name": {"formatted_name": "John Smith", "first_name": "John", "last_name": "Smith"},
                    "phones": [{"phone": "+1 (650) 555-1235", "wa_id": "16505551235", "type": "CELL"}],
                    "emails": [{"email": "john@example.com", "type": "WORK"}],
                    "org": {"company": "Example Inc."},
                    "addresses": [],
                    "urls": [],
                    "birthday": "1990-01-31",
                }
            ]
        }
    if kind == "button_reply":
        return "interactive", {
            "interactive": {
                "type": "button_reply",
                "button_reply": {"id": spec.choice_id or "btn-yes", "title": spec.choice_title or "Yes"},
            }
        }
    if kind == "list_reply":
        return "interactive", {
            "interactive": {
                "type": "list_reply",
                "list_reply": {
                    "id": spec.choice_id or "row-1",
                    "title": spec.choice_title or "Small",
                    "description": "The small one",
                },
            }
        }
    if kind == "flow_reply":
        return "interactive", {
            "interactive": {
                "type": "nfm_reply",
                "nfm_reply": {
                    "name": "flow",
                    "body": "Sent",
                    "response_json": json.dumps({"flow_token": "token-1", "choice": "b"}),
                },
            }
        }
    if kind == "request_welcome":
        return "request_welcome", {}
    if kind == "template_button":
        return "button", {"button": {"payload": "STOP_PROMOTIONS", "text": "Stop promotions"}}
    if kind in ("reaction", "unreaction"):
        reaction: dict[str, Any] = {"message_id": spec.reacted_message_id or new_wamid()}
        if kind == "reaction":
            reaction["emoji"] = "\U0001f44d"
        return "reaction", {"reaction": reaction}
    if kind == "order":
        return "order", {
            "order": {
                "catalog_id": "catalog-1",
                "text": spec.text or "Two please",
                "product_items": [
                    {"product_retailer_id": "sku-1", "quantity": 2, "item_price": 9.99, "currency": "USD"}
                ],
            }
        }
    if kind == "system_number_change":
        new = spec.new_wa_id or "16505550000"
        return "system", {
            "system": {
                "body": f"User {spec.name} changed from {spec.wa_id} to {new}",
                "wa_id": new,
                "type": "user_changed_number",
            }
        }
    if kind == "system_user_id_change":
        # Meta's "System messages" page (Aug 2026): the new BSUID, and the one it replaces.
        system: dict[str, Any] = {"body": f"User {spec.name} changed their user id", "type": "user_changed_user_id"}
        if spec.new_user_id:
            system["user_id"] = spec.new_user_id
        if spec.user_id:
            system["previous_user_id"] = spec.user_id
        return "system", {"system": system}
    if kind == "unsupported":
        return "unsupported", {
            "unsupported": {"type": "video_note"},
            "errors": [
                {
                    "code": 131051,
                    "title": "Message type unknown",
                    "message": "Message type unknown",
                    "error_data": {"details": "Message type is currently not supported."},
                }
            ],
        }
    raise ValueError(f"{kind!r} is a media kind; pass its MediaRef")


def build_message(spec: InboundSpec, media: MediaRef | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One ``value.messages[]`` item and its ``value.contacts[]`` entry (None for system messages)."""
    message: dict[str, Any] = {
        "id": spec.wamid or new_wamid(),
        "timestamp": str(spec.timestamp or int(time.time())),
    }
    if not spec.bsuid_only:
        message["from"] = spec.wa_id
    if spec.user_id:
        message["from_user_id"] = spec.new_user_id or spec.user_id
    if spec.kind in MEDIA_KINDS:
        if media is None:
            raise ValueError(f"a {spec.kind} message needs its MediaRef")
        wire_type = "audio" if spec.kind == "voice" else spec.kind
        message["type"] = wire_type
        message[wire_type] = _media_payload(spec, media)
    else:
        wire_type, payload = _typed_payload(spec)
        message["type"] = wire_type
        message.update(payload)
    context: dict[str, Any] = {}
    if spec.reply_to:
        context.update({"from": spec.wa_id, "id": spec.reply_to})
    if spec.forwarded:
        context["forwarded"] = True
    if spec.frequently_forwarded:
        context["frequently_forwarded"] = True
    if context:
        message["context"] = context
    if spec.ad_referral:
        message["referral"] = {
            "source_url": "https://fb.me/ad-1",
            "source_id": "ad-1",
            "source_type": "ad",
            "headline": "Spring sale",
            "body": "Chat with us",
            "media_type": "image",
            "image_url": "https://example.com/ad.jpg",
            "ctwa_clid": "clid-" + secrets.token_hex(8),
        }
    if wire_type == "system":
        return message, None
    contact: dict[str, Any] = {"profile": {"name": spec.name}}
    if not spec.bsuid_only:
        contact["wa_id"] = spec.wa_id
    if spec.user_id:
        contact["user_id"] = spec.user_id
    if spec.username:
        contact["profile"]["username"] = spec.username
    return message, contact


def customer_key(message: dict[str, Any]) -> str:
    """wa_id when present, else the BSUID: how the bridge keys a customer."""
    return str(message.get("from") or message.get("from_user_id"))


def build_webhook(
    *,
    waba_id: str,
    display_phone_number: str,
    phone_number_id: str,
    messages: list[tuple[dict[str, Any], dict[str, Any] | None]],
) -> dict[str, Any]:
    """One webhook POST: one change per customer, each with that customer's messages in order."""
    changes: dict[str, dict[str, Any]] = {}
    for message, contact in messages:
        value = changes.setdefault(
            customer_key(message),
            {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": display_phone_number, "phone_number_id": phone_number_id},
                "messages": [],
            },
        )
        if contact is not None and "contacts" not in value:
            value["contacts"] = [contact]
        value["messages"].append(message)
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": [{"field": "messages", "value": v} for v in changes.values()]}],
    }


def encode_webhook(payload: dict[str, Any], style: JsonStyle = "utf8") -> bytes:
    """The exact bytes to send and sign."""
    if style == "meta_escaped":
        return json.dumps(payload, ensure_ascii=True, separators=(",", ":")).replace("/", "\\/").encode()
    return orjson.dumps(payload)


def sign_webhook(app_secret: str, raw_body: bytes) -> str:
    """``X-Hub-Signature-256`` as Meta sends it: ``sha256=<lowercase hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()


async def post_webhook(
    session: aiohttp.ClientSession, url: str, app_secret: str, raw_body: bytes, *, timeout_s: float = 10.0
) -> int | None:
    """POST signed bytes as Meta does; the HTTP status, or None when there was no answer."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "facebookexternalua",
        "X-Hub-Signature-256": sign_webhook(app_secret, raw_body),
    }
    try:
        async with session.post(
            url, data=raw_body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return None


class CustomerDriver:
    """Drive customers through a running Meta simulator (``POST /__sim/inbound``)."""

    def __init__(self, meta_sim_url: str, session: aiohttp.ClientSession) -> None:
        self._base = meta_sim_url.rstrip("/")
        self._session = session

    async def send(
        self,
        phone_number_id: str,
        specs: list[InboundSpec],
        *,
        batch: bool = False,
        duplicate: bool = False,
        shuffle: bool = False,
        json_style: JsonStyle = "utf8",
        webhook_url: str | None = None,
    ) -> dict[str, Any]:
        """Generate, sign and post; returns the wamids and each POST's HTTP status."""
        payload = {
            "phone_number_id": phone_number_id,
            "messages": [spec.model_dump(exclude_none=True) for spec in specs],
            "batch": batch,
            "duplicate": duplicate,
            "shuffle": shuffle,
            "json_style": json_style,
            "webhook_url": webhook_url,
        }
        async with self._session.post(f"{self._base}/__sim/inbound", json=payload) as response:
            body: dict[str, Any] = await response.json(loads=orjson.loads)
            if response.status >= 400:
                raise SimulatorRequestError(f"Meta simulator refused the inbound request: {body}")
            return body
