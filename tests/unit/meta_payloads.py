"""Realistic Meta webhook payloads, built from the shapes in reference/whatsapp-cloud-api.md.

Every inbound message type of the reference is here (``MESSAGES``), plus builders for values, entries
and whole POST bodies, so tests compose batches the way Meta sends them.
"""

from __future__ import annotations

import copy
from typing import Any

PHONE_NUMBER_ID = "106540352242922"
DISPLAY_NUMBER = "15550783881"
WABA_ID = "102290129340398"
WA_ID = "16505551234"
BSUID = "US.13491208655302741918"
NAME = "Sheena Nelson"
TIMESTAMP = "1749416383"  # 2025-06-08T20:59:43Z
WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
OUR_WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"


def contact(wa_id: str | None = WA_ID, name: str | None = NAME, user_id: str | None = BSUID) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if name is not None:
        item["profile"] = {"name": name}
    if wa_id is not None:
        item["wa_id"] = wa_id
    if user_id is not None:
        item["user_id"] = user_id
    return item


def message(
    type_: str,
    payload: Any = None,
    *,
    wamid: str = WAMID,
    from_: str | None = WA_ID,
    from_user_id: str | None = BSUID,
    timestamp: str = TIMESTAMP,
    **extra: Any,
) -> dict[str, Any]:
    item: dict[str, Any] = {"id": wamid, "timestamp": timestamp, "type": type_}
    if from_ is not None:
        item["from"] = from_
    if from_user_id is not None:
        item["from_user_id"] = from_user_id
    if payload is not None:
        item[type_] = payload
    item.update(extra)
    return item


def status(
    status_: str,
    *,
    wamid: str = OUR_WAMID,
    recipient_id: str | None = WA_ID,
    timestamp: str = TIMESTAMP,
    errors: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    item: dict[str, Any] = {"id": wamid, "status": status_, "timestamp": timestamp}
    if recipient_id is not None:
        item["recipient_id"] = recipient_id
    if status_ in ("sent", "delivered", "read"):
        item["conversation"] = {"id": "CONVERSATION_ID", "origin": {"type": "service"}}
        item["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "service"}
    if errors:
        item["errors"] = errors
    item.update(extra)
    return item


def meta_error(code: int, title: str, details: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"code": code, "title": title, "message": title}
    if details:
        item["error_data"] = {"details": details}
    return item


def value(
    *,
    messages: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    errors: list[dict[str, Any]] | None = None,
    contacts: list[dict[str, Any]] | None = None,
    phone_number_id: str = PHONE_NUMBER_ID,
    display: str = DISPLAY_NUMBER,
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": display, "phone_number_id": phone_number_id},
    }
    if contacts is not None:
        item["contacts"] = contacts
    if messages is not None:
        item["messages"] = messages
    if statuses is not None:
        item["statuses"] = statuses
    if errors is not None:
        item["errors"] = errors
    return item


def entry(*values: dict[str, Any], waba_id: str = WABA_ID, field: str = "messages") -> dict[str, Any]:
    return {"id": waba_id, "changes": [{"field": field, "value": item} for item in values]}


def body(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": list(entries)}


def single(msg: dict[str, Any], *, contacts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A POST carrying one message from the default customer."""
    return body(entry(value(messages=[msg], contacts=[contact()] if contacts is None else contacts)))


_MEDIA_SHA = "Q2hlY2sgdGhpcyBoYXNoIGZvciB0ZXN0cyBvbmx5IQ=="

# One realistic message per type of the reference's table (and the variants it names).
MESSAGES: dict[str, dict[str, Any]] = {
    "text": message("text", {"body": "Hello, I need help with my order"}),
    "image": message(
        "image", {"id": "1234567890", "mime_type": "image/jpeg", "sha256": _MEDIA_SHA, "caption": "Taj Mahal"}
    ),
    "video": message("video", {"id": "2234567890", "mime_type": "video/mp4", "sha256": _MEDIA_SHA}),
    "audio": message("audio", {"id": "3234567890", "mime_type": "audio/mpeg", "sha256": _MEDIA_SHA, "voice": False}),
    "voice": message(
        "audio", {"id": "4234567890", "mime_type": "audio/ogg; codecs=opus", "sha256": _MEDIA_SHA, "voice": True}
    ),
    "document": message(
        "document",
        {
            "id": "5234567890",
            "mime_type": "application/pdf",
            "sha256": _MEDIA_SHA,
            "filename": "invoice-2025-06.pdf",
            "caption": "My invoice",
        },
    ),
    "sticker": message(
        "sticker", {"id": "6234567890", "mime_type": "image/webp", "sha256": _MEDIA_SHA, "animated": False}
    ),
    "location": message(
        "location",
        {
            "latitude": 27.1751,
            "longitude": 78.0421,
            "name": "Taj Mahal",
            "address": "Dharmapuri, Forest Colony, Tajganj, Agra, Uttar Pradesh 282001, India",
        },
    ),
    "contacts": message(
        "contacts",
        [
            {
                "name": {"formatted_name": "Barbara J. Johnson", "first_name": "Barbara", "last_name": "Johnson"},
                "phones": [
                    {"phone": "+1 (940) 555-1234", "wa_id": "19405551234", "type": "HOME"},
                    {"phone": "+1 (650) 555-1234", "type": "WORK"},
                ],
                "emails": [{"email": "bjohnson@example.com", "type": "WORK"}],
                "org": {"company": "Lucky Shrub", "title": "Manager"},
                "birthday": "1999-01-23",
            }
        ],
    ),
    "button_reply": message(
        "interactive",
        {"type": "button_reply", "button_reply": {"id": "confirm-yes", "title": "Yes, confirm"}},
        context={"from": DISPLAY_NUMBER, "id": OUR_WAMID},
    ),
    "list_reply": message(
        "interactive",
        {
            "type": "list_reply",
            "list_reply": {"id": "slot-2", "title": "Tuesday 10:00", "description": "Agra store"},
        },
        context={"from": DISPLAY_NUMBER, "id": OUR_WAMID},
    ),
    "nfm_reply": message(
        "interactive",
        {
            "type": "nfm_reply",
            "nfm_reply": {
                "name": "flow",
                "body": "Sent",
                "response_json": '{"flow_token": "FT-123", "full_name": "Sheena Nelson", '
                '"preferred_date": "2025-06-10", "topics": ["billing", "delivery"], "newsletter": true}',
            },
        },
        context={"from": DISPLAY_NUMBER, "id": OUR_WAMID},
    ),
    "template_button": message(
        "button",
        {"payload": "STOP_PROMOTIONS", "text": "Stop promotions"},
        context={"from": DISPLAY_NUMBER, "id": OUR_WAMID},
    ),
    "reaction": message("reaction", {"message_id": OUR_WAMID, "emoji": "\U0001f44d"}),
    "unreaction": message("reaction", {"message_id": OUR_WAMID}),
    "order": message(
        "order",
        {
            "catalog_id": "194836987003835",
            "text": "Please deliver after 5pm",
            "product_items": [
                {"product_retailer_id": "SKU-TEA", "quantity": 2, "item_price": 12.5, "currency": "USD"},
                {"product_retailer_id": "SKU-MUG", "quantity": 1, "item_price": 8, "currency": "USD"},
            ],
        },
    ),
    "unsupported": message(
        "unsupported",
        {"type": "poll"},
        errors=[meta_error(131051, "Message type unknown", "Message type is currently not supported.")],
    ),
    "system": message(
        "system",
        {
            "body": "User A changed from 16505551234 to 16505559999",
            "wa_id": "16505559999",
            "type": "user_changed_number",
        },
    ),
    "reply_text": message(
        "text", {"body": "Yes, that one"}, wamid=WAMID + "R", context={"from": DISPLAY_NUMBER, "id": OUR_WAMID}
    ),
    "forwarded": message("text", {"body": "Look at this"}, context={"forwarded": True}),
    "frequently_forwarded": message("text", {"body": "Chain letter"}, context={"frequently_forwarded": True}),
    "ad_referral": message(
        "text",
        {"body": "Is this still available?"},
        referral={
            "source_url": "https://fb.me/3cr4Wqqkv",
            "source_id": "120226305854810726",
            "source_type": "ad",
            "headline": "Summer tea sale",
            "body": "20% off all green teas",
            "media_type": "image",
            "image_url": "https://example.com/ad.jpg",
            "ctwa_clid": "ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7JwFF4XvnO2E4Nx0-eM-ZABe",
        },
    ),
    "product_enquiry": message(
        "text",
        {"body": "Do you have it in blue?"},
        context={
            "from": DISPLAY_NUMBER,
            "id": OUR_WAMID,
            "referred_product": {"catalog_id": "194836987003835", "product_retailer_id": "SKU-MUG"},
        },
    ),
}


def get(name: str) -> dict[str, Any]:
    """A fresh copy of ``MESSAGES[name]`` (tests may mutate it)."""
    return copy.deepcopy(MESSAGES[name])
