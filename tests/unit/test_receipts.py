"""WhatsApp statuses -> Genesys receipts, and Genesys's outbound webhook -> typed records."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.unit import genesys_sdk
from tests.unit import meta_payloads as mp
from wabridge.schemas.genesys import IdType, OutboundKind
from wabridge.schemas.meta import normalize, split_webhook
from wabridge.schemas.records import StatusUpdate
from wabridge.simulators.genesys_validation import validate_receipt
from wabridge.transforms.receipts import (
    OutboundEvent,
    OutboundWebhookError,
    parse_outbound_webhook,
    reason_code,
    to_open_receipt,
)


def status_update(raw: dict[str, Any]) -> StatusUpdate:
    [event] = split_webhook(
        mp.body(mp.entry(mp.value(statuses=[raw]))), tenant_id="acme", webhook_id="wh", received_at=0.0
    )
    record = normalize(event)
    assert isinstance(record, StatusUpdate)
    return record


def check_valid(body: dict[str, Any]) -> None:
    genesys_sdk.build("OpenInboundNormalizedReceipt", body)
    assert validate_receipt(body) == []


def test_delivered_becomes_a_final_delivered_receipt() -> None:
    body = to_open_receipt(status_update(mp.status("delivered")), genesys_message_id="g-agent-1")
    assert body is not None
    check_valid(body)
    assert body == {
        "id": "g-agent-1",
        "channel": {"to": {"id": mp.WA_ID, "idType": "Phone"}, "time": "2025-06-08T20:59:43.000Z"},
        "status": "Delivered",
        "direction": "Outbound",
        "isFinalReceipt": True,
    }


@pytest.mark.parametrize("whatsapp_status", ["sent", "read", "played"])
def test_statuses_genesys_is_not_told_about(whatsapp_status: str) -> None:
    assert to_open_receipt(status_update(mp.status(whatsapp_status)), genesys_message_id="g-1") is None


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (131047, "MessageExpired"),
        (130429, "RateLimited"),
        (131056, "RateLimited"),
        (131026, "InvalidDestination"),
        (131053, "MediaTypeNotAllowed"),
        (131051, "UnsupportedMessage"),
        (131050, "RecipientOptedOut"),
        (131000, "GeneralError"),
        (132001, "GeneralError"),
    ],
)
def test_failed_maps_meta_codes_to_genesys_reasons(code: int, expected: str) -> None:
    raw = mp.status("failed", errors=[mp.meta_error(code, "Problem title", "Problem details")])
    body = to_open_receipt(status_update(raw), genesys_message_id="g-agent-2")
    assert body is not None
    check_valid(body)
    assert body["status"] == "Failed" and body["isFinalReceipt"] is True
    [reason] = body["reasons"]
    assert reason["code"] == expected == reason_code(code).value
    assert str(code) in reason["message"] and "Problem title" in reason["message"]
    assert "Problem details" in reason["message"]


def test_failed_without_errors_still_carries_a_reason() -> None:
    body = to_open_receipt(status_update(mp.status("failed")), genesys_message_id="g-3")
    assert body is not None
    check_valid(body)
    assert body["reasons"][0]["code"] == "GeneralError"


def test_bsuid_recipient_is_opaque() -> None:
    raw = mp.status("delivered", recipient_id=None, recipient_user_id=mp.BSUID)
    body = to_open_receipt(status_update(raw), genesys_message_id="g-4")
    assert body is not None
    check_valid(body)
    assert body["channel"]["to"] == {"id": mp.BSUID, "idType": "Opaque"}
    override = to_open_receipt(
        status_update(mp.status("delivered")), genesys_message_id="g", customer_id_type=IdType.OPAQUE
    )
    assert override is not None and override["channel"]["to"]["idType"] == "Opaque"


# -- Genesys outbound webhook ----------------------------------------------------------------------


def outbound(type_: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "9b1b2cfa34e24a0c8f1a2d3c4b5a6978",
        "channel": {
            "id": "integration-1",
            "platform": "Open",
            "type": "Private",
            "to": {"id": mp.WA_ID, "idType": "Phone"},
            "from": {"id": "integration-1", "idType": "Opaque", "nickname": "Agent Smith"},
            "time": "2025-06-08T21:00:01.123Z",
        },
        "type": type_,
        "direction": "Outbound",
    }
    body.update(fields)
    return body


def test_agent_text_message() -> None:
    event = parse_outbound_webhook(orjson.dumps(outbound("Text", text="Hello Sheena 👋")), tenant_id="acme")
    assert event.kind is OutboundKind.TEXT
    assert event.id == "9b1b2cfa34e24a0c8f1a2d3c4b5a6978"
    assert event.customer_id == mp.WA_ID and event.key == f"acme:{mp.WA_ID}"
    assert event.integration_id == "integration-1"
    assert event.text == "Hello Sheena 👋"
    assert event.agent_nickname == "Agent Smith"
    assert OutboundEvent.from_bytes(event.to_bytes()) == event


def test_agent_attachment() -> None:
    content = [
        {
            "contentType": "Attachment",
            "attachment": {
                "id": "att-1",
                "mediaType": "Image",
                "url": "https://api.mypurecloud.com/uploads/att-1.png",
                "mime": "image/png",
                "filename": "map.png",
                "contentSizeBytes": 52341,
            },
        }
    ]
    event = parse_outbound_webhook(outbound("Text", text="See map", content=content), tenant_id="acme")
    [attachment] = event.attachments
    assert attachment.url.endswith("att-1.png") and attachment.mime == "image/png"
    assert attachment.media_type == "Image" and attachment.size == 52341 and attachment.filename == "map.png"


def test_typing_event() -> None:
    body = outbound("Event", events=[{"eventType": "Typing", "typing": {"type": "On", "duration": 5000}}])
    event = parse_outbound_webhook(body, tenant_id="acme")
    assert event.kind is OutboundKind.EVENT
    assert event.typing is not None and event.typing.duration_ms == 5000
    assert event.event_types == ("Typing",)


def test_receipt_names_the_inbound_message() -> None:
    body = outbound("Receipt", status="Failed", isFinalReceipt=True, direction="Inbound")
    body["channel"]["messageId"] = mp.WAMID
    body["reasons"] = [{"code": "GeneralError", "message": "Agent could not receive"}]
    event = parse_outbound_webhook(body, tenant_id="acme")
    assert event.kind is OutboundKind.RECEIPT
    assert event.channel_message_id == mp.WAMID
    assert event.receipt_status == "Failed" and event.is_final_receipt is True
    assert event.reasons[0].code == "GeneralError"


def test_structured_message_keeps_its_raw_content() -> None:
    quick_replies = [
        {"contentType": "QuickReply", "quickReply": {"text": "Yes", "payload": "yes", "action": "Message"}}
    ]
    event = parse_outbound_webhook(outbound("Structured", text="Confirm?", content=quick_replies), tenant_id="acme")
    assert event.kind is OutboundKind.STRUCTURED
    assert event.attachments == ()
    assert event.raw["content"] == quick_replies


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        orjson.dumps({"id": "x"}),
        orjson.dumps({**outbound("Text"), "channel": {"platform": "Open"}}),  # no channel.to
        orjson.dumps(outbound("Carousel")),
    ],
)
def test_unreadable_outbound_webhooks_are_refused_with_a_reason(body: bytes) -> None:
    with pytest.raises(OutboundWebhookError) as caught:
        parse_outbound_webhook(body, tenant_id="acme")
    assert caught.value.reason
