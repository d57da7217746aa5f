"""Every WhatsApp message type -> the Genesys OpenInboundNormalizedMessage an agent sees.

Each produced body is checked three ways: the fields an agent/Genesys would see, the official SDK
models (an enum value outside the SDK's raises), and the Genesys simulator's validation.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from tests.unit import genesys_sdk
from tests.unit import meta_payloads as mp
from wabridge.schemas.meta import normalize, split_webhook
from wabridge.schemas.records import (
    MEDIA_TYPE_BY_WHATSAPP_TYPE,
    Attachment,
    ConversationRef,
    InboundMessage,
    MediaUnavailable,
    MediaUnavailableReason,
)
from wabridge.simulators.genesys_validation import validate_message, validate_structured_response
from wabridge.transforms import (
    AGENT_TEXT_LIMIT,
    MissingAttachmentError,
    split_text,
    to_open_message,
    to_open_messages,
    to_structured_response,
)

GENESYS_MEDIA_TYPES = {"Image", "Video", "Audio", "File", "Link"}
MEDIA_NAMES = ["image", "video", "audio", "voice", "document", "sticker"]
EXPECTED_MEDIA_TYPE = {
    "image": "Image",
    "video": "Video",
    "audio": "Audio",
    "voice": "Audio",
    "document": "File",
    "sticker": "Image",
}


def inbound(raw: dict[str, Any], contacts: list[dict[str, Any]] | None = None) -> InboundMessage:
    [event] = split_webhook(mp.single(raw, contacts=contacts), tenant_id="acme", webhook_id="wh", received_at=0.0)
    record = normalize(event)
    assert isinstance(record, InboundMessage)
    return record


def attachment_for(msg: InboundMessage) -> Attachment:
    payload = msg.payload
    assert isinstance(payload, dict)
    return Attachment(
        url=f"https://media.example.com/acme/{msg.type}/2025-06-08/{msg.wamid}?X-Amz-Signature=abc",
        mime=payload["mime_type"],
        media_type=MEDIA_TYPE_BY_WHATSAPP_TYPE[msg.type],
        filename=payload.get("filename") or f"{msg.wamid}.bin",
        sha256="4a5b6c",
        size=2048,
    )


def render(name: str, **kwargs: Any) -> list[dict[str, Any]]:
    msg = inbound(mp.get(name))
    if msg.type in MEDIA_TYPE_BY_WHATSAPP_TYPE and "attachments" not in kwargs and "media_unavailable" not in kwargs:
        kwargs["attachments"] = [attachment_for(msg)]
    return to_open_messages(msg, **kwargs)


def check_valid(body: dict[str, Any]) -> None:
    """What Genesys accepts: SDK models, the simulator's rules, and our own reading of the reference."""
    genesys_sdk.build("OpenInboundNormalizedMessage", body)
    assert validate_message(body) == []
    assert "metadata" not in body, "custom data goes in channel.metadata.customAttributes only"
    assert set(body["channel"]["metadata"]) == {"customAttributes"}
    attributes = body["channel"]["metadata"]["customAttributes"]
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in attributes.items())
    for item in body.get("content", []):
        assert item["attachment"]["mediaType"] in GENESYS_MEDIA_TYPES
        assert "/" not in item["attachment"]["mediaType"]
    assert body.get("text") or body.get("content")
    if "text" in body:
        assert len(body["text"].encode("utf-16-le")) // 2 <= AGENT_TEXT_LIMIT


ALL_BUT_SYSTEM = [name for name in mp.MESSAGES if name != "system"]


@pytest.mark.parametrize("name", ALL_BUT_SYSTEM)
def test_every_type_produces_a_valid_genesys_message(name: str) -> None:
    bodies = render(name)
    assert len(bodies) == 1
    body = bodies[0]
    check_valid(body)
    raw = mp.MESSAGES[name]
    channel = body["channel"]
    assert channel["messageId"] == raw["id"]
    assert channel["time"] == "2025-06-08T20:59:43.000Z"
    assert channel["from"] == {
        "id": mp.WA_ID,
        "idType": "Phone",
        "nickname": mp.NAME,
        "firstName": "Sheena",
        "lastName": "Nelson",
    }
    attributes = channel["metadata"]["customAttributes"]
    assert attributes["waPhoneNumberId"] == mp.PHONE_NUMBER_ID
    assert attributes["waType"] == raw["type"]
    assert attributes["waMessageId"] == raw["id"]
    assert attributes["tenantId"] == "acme"


def test_sdk_check_really_rejects_a_mime_media_type_and_top_level_metadata_object() -> None:
    [body] = render("image")
    broken = orjson.loads(orjson.dumps(body))
    broken["content"][0]["attachment"]["mediaType"] = "image/jpeg"
    with pytest.raises(ValueError, match="media_type"):
        genesys_sdk.build("OpenInboundNormalizedMessage", broken)
    nested = orjson.loads(orjson.dumps(body))
    nested["metadata"] = {"tenant": {"id": "acme"}}
    with pytest.raises(AssertionError):
        genesys_sdk.build("OpenInboundNormalizedMessage", nested)
    bad_id_type = orjson.loads(orjson.dumps(body))
    bad_id_type["channel"]["from"]["idType"] = "WhatsApp"
    with pytest.raises(ValueError, match="id_type"):
        genesys_sdk.build("OpenInboundNormalizedMessage", bad_id_type)


def test_text() -> None:
    [body] = render("text")
    assert body["text"] == "Hello, I need help with my order"
    assert "content" not in body


@pytest.mark.parametrize("name", MEDIA_NAMES)
def test_media_become_attachments_with_the_enum_media_type(name: str) -> None:
    msg = inbound(mp.get(name))
    att = attachment_for(msg)
    [body] = to_open_messages(msg, attachments=[att])
    [item] = body["content"]
    attachment = item["attachment"]
    assert attachment["mediaType"] == EXPECTED_MEDIA_TYPE[name]
    assert attachment["url"] == att.url
    assert attachment["mime"] == mp.MESSAGES[name][msg.type]["mime_type"]
    assert attachment["sha256"] == "4a5b6c"
    assert attachment["filename"] == att.filename
    caption = mp.MESSAGES[name][msg.type].get("caption")
    if caption:
        assert body["text"] == caption
        assert attachment["text"] == caption
    else:
        assert "text" not in attachment


def test_voice_note_and_sticker_are_labelled() -> None:
    [voice] = render("voice")
    assert "Voice message" in voice["text"]
    assert voice["channel"]["metadata"]["customAttributes"]["waVoice"] == "true"
    [sticker] = render("sticker")
    assert "Sticker" in sticker["text"]


def test_document_keeps_its_filename() -> None:
    [body] = render("document")
    assert body["content"][0]["attachment"]["filename"] == "invoice-2025-06.pdf"
    assert body["text"] == "My invoice"


@pytest.mark.parametrize("reason", list(MediaUnavailableReason))
def test_unavailable_media_becomes_a_clear_note_not_silence(reason: MediaUnavailableReason) -> None:
    note = MediaUnavailable(reason=reason, detail="over the 25 MB Genesys limit", size=80 * 1024 * 1024)
    [body] = render("document", media_unavailable=note)
    check_valid(body)
    assert "content" not in body
    text = body["text"]
    assert "document" in text and "invoice-2025-06.pdf" in text
    assert "cannot be shown" in text
    assert "over the 25 MB Genesys limit" in text
    assert "80.0 MB" in text
    assert "My invoice" in text  # the caption is not lost either


def test_media_error_131052_without_a_note_is_still_explained() -> None:
    raw = mp.message(
        "video",
        {"id": "777", "mime_type": "video/mp4", "sha256": "x"},
        errors=[mp.meta_error(131052, "Media download error", "Media file is over 100 MB")],
    )
    [body] = to_open_messages(inbound(raw))
    check_valid(body)
    assert "131052" in body["text"] and "over 100 MB" in body["text"] and "video" in body["text"]


def test_media_without_attachment_or_note_fails_loudly() -> None:
    with pytest.raises(MissingAttachmentError):
        to_open_messages(inbound(mp.get("image")))


def test_location_has_name_address_and_a_map_link() -> None:
    [body] = render("location")
    text = body["text"]
    assert "Taj Mahal" in text and "Agra" in text
    assert "https://www.google.com/maps/search/?api=1&query=27.1751,78.0421" in text


def test_contacts_show_names_phones_and_emails() -> None:
    [body] = render("contacts")
    text = body["text"]
    for expected in ("Barbara J. Johnson", "+1 (940) 555-1234", "+1 (650) 555-1234", "bjohnson@example.com"):
        assert expected in text
    assert "Lucky Shrub" in text


def test_interactive_replies() -> None:
    [button] = render("button_reply")
    assert "Yes, confirm" in button["text"]
    assert button["channel"]["metadata"]["customAttributes"]["waReplyPayload"] == "confirm-yes"
    [listed] = render("list_reply")
    assert "Tuesday 10:00" in listed["text"] and "Agra store" in listed["text"]
    [template] = render("template_button")
    assert "Stop promotions" in template["text"]
    assert template["channel"]["metadata"]["customAttributes"]["waReplyPayload"] == "STOP_PROMOTIONS"


def test_flow_reply_shows_the_answers_readably() -> None:
    [body] = render("nfm_reply")
    text = body["text"]
    assert "Full name: Sheena Nelson" in text
    assert "Preferred date: 2025-06-10" in text
    assert "Topics: billing, delivery" in text
    assert "Newsletter: yes" in text
    assert "FT-123" not in text and "{" not in text


def test_reaction_and_unreaction_say_which_message() -> None:
    [reaction] = render("reaction")
    assert "\U0001f44d" in reaction["text"] and mp.OUR_WAMID in reaction["text"]
    assert reaction["channel"]["metadata"]["customAttributes"]["waContextMessageId"] == mp.OUR_WAMID
    [removed] = render("unreaction")
    assert "Removed" in removed["text"] and mp.OUR_WAMID in removed["text"]


def test_order_lists_items_and_total() -> None:
    [body] = render("order")
    text = body["text"]
    assert "2 x SKU-TEA at 12.50 USD = 25.00 USD" in text
    assert "1 x SKU-MUG at 8.00 USD = 8.00 USD" in text
    assert "Total: 33.00 USD" in text
    assert "Please deliver after 5pm" in text


def test_unsupported_says_whatsapp_cannot_deliver_it() -> None:
    [body] = render("unsupported")
    text = body["text"]
    assert "cannot deliver" in text and "Message type unknown" in text and "poll" in text


def test_unknown_future_type_is_shown_not_dropped() -> None:
    [body] = to_open_messages(inbound(mp.message("hologram", {"id": "1"})))
    check_valid(body)
    assert "hologram" in body["text"]


def test_system_events_are_not_for_the_agent() -> None:
    msg = inbound(mp.get("system"), contacts=[])
    assert to_open_messages(msg) == []
    assert to_open_message(msg) is None


def test_reply_forward_and_product_context() -> None:
    [reply] = render("reply_text")
    assert "In reply to" in reply["text"] and mp.OUR_WAMID in reply["text"] and "Yes, that one" in reply["text"]
    [forwarded] = render("forwarded")
    assert forwarded["text"].startswith("[Forwarded]")
    assert forwarded["channel"]["metadata"]["customAttributes"]["waForwarded"] == "true"
    [frequent] = render("frequently_forwarded")
    assert "Forwarded many times" in frequent["text"]
    [product] = render("product_enquiry")
    assert "SKU-MUG" in product["text"]


def test_ad_referral_shows_headline_and_source() -> None:
    [body] = render("ad_referral")
    assert "Summer tea sale" in body["text"] and "https://fb.me/3cr4Wqqkv" in body["text"]
    attributes = body["channel"]["metadata"]["customAttributes"]
    assert attributes["waReferralSourceUrl"] == "https://fb.me/3cr4Wqqkv"
    assert attributes["waReferralHeadline"] == "Summer tea sale"


def test_bsuid_only_customer_is_opaque() -> None:
    raw = mp.message("text", {"body": "hi"}, from_=None, from_user_id=mp.BSUID)
    msg = inbound(raw, contacts=[{"profile": {"name": "Madonna"}, "user_id": mp.BSUID}])
    [body] = to_open_messages(msg)
    check_valid(body)
    assert body["channel"]["from"] == {
        "id": mp.BSUID,
        "idType": "Opaque",
        "nickname": "Madonna",
        "firstName": "Madonna",
    }
    assert "waId" not in body["channel"]["metadata"]["customAttributes"]


def test_non_ascii_text_is_passed_unchanged() -> None:
    text = "Olá! ¿Dónde está mi pedido? 我的订单在哪里 🙏🏽 ✅"
    [body] = to_open_messages(inbound(mp.message("text", {"body": text})))
    check_valid(body)
    assert body["text"] == text
    assert orjson.loads(orjson.dumps(body))["text"] == text


def test_caller_custom_attributes_are_strings_in_custom_attributes() -> None:
    conversation_id = str(uuid.uuid4())
    [body] = render("text", custom_attributes={"conversationId": conversation_id})
    assert body["channel"]["metadata"]["customAttributes"]["conversationId"] == conversation_id
    check_valid(body)


def test_long_text_is_split_into_marked_parts_without_losing_anything() -> None:
    paragraph = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 30  # ~1700 chars
    text = "\n".join([paragraph.strip()] * 6)  # ~10k chars
    msg = inbound(mp.message("text", {"body": text}))
    bodies = to_open_messages(msg)
    assert len(bodies) == 3
    for number, body in enumerate(bodies, start=1):
        check_valid(body)
        assert body["text"].startswith(f"(part {number}/3)\n")
        assert body["channel"]["metadata"]["customAttributes"]["waPart"] == f"{number}/3"
        assert body["channel"]["metadata"]["customAttributes"]["waMessageId"] == msg.wamid
    assert bodies[0]["channel"]["messageId"] == msg.wamid
    assert len({body["channel"]["messageId"] for body in bodies}) == 3
    words = " ".join(body["text"].split("\n", 1)[1] for body in bodies).split()
    assert words == text.split()
    with pytest.raises(ValueError, match="to_open_messages"):
        to_open_message(msg)


def test_split_counts_emoji_as_two_units_and_cuts_hard_without_spaces() -> None:
    text = "🙂" * 3000  # 6000 UTF-16 units, no spaces
    parts = split_text(text)
    assert len(parts) == 2
    assert "".join(parts) == text
    assert all(len(p.encode("utf-16-le")) // 2 <= AGENT_TEXT_LIMIT for p in parts)
    assert split_text("short") == ["short"]
    exact = "a" * AGENT_TEXT_LIMIT
    assert split_text(exact) == [exact]


def test_transform_is_deterministic() -> None:
    for name in ALL_BUT_SYSTEM:
        first = orjson.dumps(render(name))
        second = orjson.dumps(render(name))
        assert first == second, name


# -- structured responses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "text", "payload"),
    [
        ("button_reply", "QuickReply", "Yes, confirm", "confirm-yes"),
        ("template_button", "QuickReply", "Stop promotions", "STOP_PROMOTIONS"),
        ("list_reply", "Button", "Tuesday 10:00", "slot-2"),
    ],
)
def test_structured_response_when_the_originating_message_is_known(
    name: str, kind: str, text: str, payload: str
) -> None:
    msg = inbound(mp.get(name))
    conversation = ConversationRef(
        conversation_id=uuid.uuid4(), originating_message_ids={mp.OUR_WAMID: "genesys-msg-42"}
    )
    originating = conversation.originating_message_id(msg)
    assert originating == "genesys-msg-42"
    body = to_structured_response(msg, originating_message_id=originating)
    assert body is not None
    genesys_sdk.build("OpenInboundStructuredResponseMessage", body)
    assert validate_structured_response(body) == []
    assert body["buttonResponse"] == {"type": kind, "text": text, "payload": payload}
    assert body["originatingMessageId"] == "genesys-msg-42"
    assert body["channel"]["messageId"] == msg.wamid
    assert body["channel"]["from"]["id"] == mp.WA_ID


def test_no_structured_response_for_other_types_or_unknown_origin() -> None:
    assert to_structured_response(inbound(mp.get("text")), originating_message_id="g-1") is None
    assert to_structured_response(inbound(mp.get("nfm_reply")), originating_message_id="g-1") is None
    msg = inbound(mp.get("button_reply"))
    assert ConversationRef(conversation_id=uuid.uuid4()).originating_message_id(msg) is None


def test_routing_data_for_an_architect_flow_is_in_custom_attributes_and_bounded() -> None:
    raw = mp.get("text")
    raw["referral"] = {"source_id": "ad-7", "headline": "H" * 300, "source_type": "ad"}
    raw["from_user_id"] = mp.BSUID
    contact = mp.contact(user_id=mp.BSUID)
    contact["profile"]["username"] = "sheena.k"
    [body] = to_open_messages(inbound(raw, contacts=[contact]))
    check_valid(body)
    attributes = body["channel"]["metadata"]["customAttributes"]
    assert attributes["tenantId"] == "acme"
    assert attributes["waPhoneNumberId"] == mp.PHONE_NUMBER_ID  # the business number written to
    assert attributes["waDisplayPhoneNumber"]
    assert (attributes["waUsername"], attributes["waUserId"], attributes["waId"]) == ("sheena.k", mp.BSUID, mp.WA_ID)
    assert attributes["waReferralSourceId"] == "ad-7"
    assert len(attributes["waReferralHeadline"]) == 256 and attributes["waReferralHeadline"].endswith("…")
    assert all(len(value) <= 256 for value in attributes.values())


def test_a_username_only_customer_is_opaque_with_the_username_as_nickname() -> None:
    raw = mp.get("text")
    raw.pop("from")
    raw["from_user_id"] = mp.BSUID
    contact = mp.contact(wa_id=None, name=None, user_id=mp.BSUID)
    contact["profile"] = {"username": "sheena.k"}
    [body] = to_open_messages(inbound(raw, contacts=[contact]))
    check_valid(body)
    assert body["channel"]["from"] == {"id": mp.BSUID, "idType": "Opaque", "nickname": "sheena.k"}
