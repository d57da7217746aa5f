"""Splitting Meta webhooks into per-event records, and normalizing them."""

from __future__ import annotations

import orjson
import pydantic
import pytest

from tests.unit import meta_payloads as mp
from wabridge.errors import PermanentError
from wabridge.schemas.meta import (
    InvalidEventError,
    WebhookShapeError,
    archive_message_id,
    message_ids,
    non_message_fields,
    normalize,
    parse_webhook,
    phone_number_ids,
    split_webhook,
)
from wabridge.schemas.records import (
    BusinessError,
    EventKind,
    InboundMessage,
    PreferenceUpdate,
    StatusUpdate,
    WebhookEvent,
)
from wabridge.schemas.status import MessageStatus


def split(body: bytes | dict, tenant: str = "acme") -> list[WebhookEvent]:
    return split_webhook(body, tenant_id=tenant, webhook_id="wh-1", received_at=1749416384.5)


def test_one_message_carries_its_routing_facts() -> None:
    [event] = split(mp.single(mp.get("text")))
    assert event.kind is EventKind.MESSAGE
    assert event.customer_id == mp.WA_ID
    assert event.key == f"acme:{mp.WA_ID}"
    assert event.phone_number_id == mp.PHONE_NUMBER_ID
    assert event.display_phone_number == mp.DISPLAY_NUMBER
    assert event.waba_id == mp.WABA_ID
    assert event.contact is not None
    assert (event.contact.name, event.contact.wa_id, event.contact.user_id) == (mp.NAME, mp.WA_ID, mp.BSUID)
    assert event.event == mp.get("text")
    assert (event.entry_index, event.change_index, event.index, event.seq) == (0, 0, 0, 0)
    assert event.webhook_id == "wh-1" and event.received_at == 1749416384.5
    assert event.event_id == "wh-1:0"


def test_batch_across_entries_and_changes_keeps_every_event_in_order() -> None:
    alice, bob, carol = "14155550001", "14155550002", "14155550003"
    body = mp.body(
        mp.entry(
            mp.value(
                contacts=[mp.contact(alice, "Alice", None), mp.contact(bob, "Bob", None)],
                messages=[
                    mp.message("text", {"body": "a1"}, wamid="wamid.a1", from_=alice, from_user_id=None),
                    mp.message("text", {"body": "b1"}, wamid="wamid.b1", from_=bob, from_user_id=None),
                    mp.message("text", {"body": "a2"}, wamid="wamid.a2", from_=alice, from_user_id=None),
                ],
            ),
            mp.value(statuses=[mp.status("delivered", wamid="wamid.out1", recipient_id=carol)]),
        ),
        mp.entry(
            mp.value(
                phone_number_id="999000111",
                display="15550000000",
                contacts=[mp.contact(carol, "Carol", None)],
                messages=[mp.message("text", {"body": "c1"}, wamid="wamid.c1", from_=carol, from_user_id=None)],
                statuses=[mp.status("read", wamid="wamid.out2", recipient_id=alice)],
            ),
            mp.value(phone_number_id="999000111", errors=[mp.meta_error(131000, "Something went wrong")]),
            waba_id="WABA-2",
        ),
    )
    events = split(orjson.dumps(body))
    assert [e.seq for e in events] == list(range(7))
    assert [(e.kind.value, e.customer_id) for e in events] == [
        ("message", alice),
        ("message", bob),
        ("message", alice),
        ("status", carol),
        ("message", carol),
        ("status", alice),
        ("error", "_business:999000111"),
    ]
    assert [(e.entry_index, e.change_index, e.index) for e in events] == [
        (0, 0, 0),
        (0, 0, 1),
        (0, 0, 2),
        (0, 1, 0),
        (1, 0, 0),
        (1, 0, 0),
        (1, 1, 0),
    ]
    # each message gets its own contact, not contacts[0]
    names = [e.contact.name if e.contact else None for e in events if e.kind is EventKind.MESSAGE]
    assert names == ["Alice", "Bob", "Alice", "Carol"]
    assert {e.waba_id for e in events[4:]} == {"WABA-2"}
    assert {e.phone_number_id for e in events[4:]} == {"999000111"}
    assert phone_number_ids(orjson.dumps(body)) == {mp.PHONE_NUMBER_ID, "999000111"}
    assert message_ids(body) == ["wamid.a1", "wamid.b1", "wamid.a2", "wamid.out1", "wamid.c1", "wamid.out2"]


def test_a_thousand_updates_for_many_customers_all_become_records() -> None:
    messages = [
        mp.message("text", {"body": f"n{i}"}, wamid=f"wamid.{i}", from_=f"1415555{i:04d}", from_user_id=None)
        for i in range(1000)
    ]
    contacts = [mp.contact(f"1415555{i:04d}", f"Customer {i}", None) for i in range(1000)]
    body = orjson.dumps(mp.body(mp.entry(mp.value(messages=messages, contacts=contacts))))
    events = split(body)
    assert len(events) == 1000
    assert len({e.key for e in events}) == 1000
    assert all(e.contact and e.contact.name == f"Customer {i}" for i, e in enumerate(events))
    assert [e.event["id"] for e in events] == [f"wamid.{i}" for i in range(1000)]


def test_bsuid_only_user_is_keyed_by_bsuid() -> None:
    msg = mp.message("text", {"body": "hi"}, from_=None, from_user_id=mp.BSUID, username="@sheena")
    body = mp.single(msg, contacts=[{"profile": {"name": mp.NAME}, "user_id": mp.BSUID, "username": "@sheena"}])
    [event] = split(body)
    assert event.customer_id == mp.BSUID
    assert event.key == f"acme:{mp.BSUID}"
    assert event.contact is not None and event.contact.wa_id is None and event.contact.username == "@sheena"
    record = normalize(event)
    assert isinstance(record, InboundMessage)
    assert record.wa_id is None and record.bsuid == mp.BSUID and record.customer_id == mp.BSUID
    assert record.username == "@sheena"


def test_wa_id_wins_over_bsuid_when_both_are_present() -> None:
    [event] = split(mp.single(mp.get("text")))
    record = normalize(event)
    assert isinstance(record, InboundMessage)
    assert record.customer_id == mp.WA_ID and record.wa_id == mp.WA_ID and record.bsuid == mp.BSUID


def test_status_keyed_by_recipient_or_its_bsuid() -> None:
    with_wa = mp.status("delivered")
    bsuid_only = mp.status("read", recipient_id=None, recipient_user_id=mp.BSUID)
    events = split(mp.body(mp.entry(mp.value(statuses=[with_wa, bsuid_only]))))
    assert [e.customer_id for e in events] == [mp.WA_ID, mp.BSUID]
    second = normalize(events[1])
    assert isinstance(second, StatusUpdate)
    assert second.recipient_id is None and second.recipient_bsuid == mp.BSUID


def test_event_without_any_customer_is_kept_and_rejected_by_normalize() -> None:
    msg = mp.message("text", {"body": "?"}, from_=None, from_user_id=None)
    [event] = split(mp.single(msg, contacts=[]))
    assert event.customer_id == f"_unidentified:{mp.PHONE_NUMBER_ID}"
    with pytest.raises(InvalidEventError) as caught:
        normalize(event)
    assert caught.value.reason == "no_customer_id"
    assert isinstance(caught.value, PermanentError)


def test_a_contact_for_another_customer_is_not_attached() -> None:
    msg = mp.message("text", {"body": "hi"}, from_="14155550009", from_user_id=None)
    [event] = split(mp.single(msg, contacts=[mp.contact("14155550001", "Someone Else", None)]))
    assert event.customer_id == "14155550009"
    assert event.contact is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "not_whatsapp_payload"),
        (orjson.dumps({"object": "page", "entry": []}), "not_whatsapp_payload"),
        (orjson.dumps({"object": "whatsapp_business_account"}), "not_whatsapp_payload"),
        (orjson.dumps({"object": "whatsapp_business_account", "entry": []}), "not_whatsapp_payload"),
        (orjson.dumps({"object": "whatsapp_business_account", "entry": "x"}), "not_whatsapp_payload"),
        (
            orjson.dumps(
                {
                    "object": "whatsapp_business_account",
                    "entry": [{"id": "1", "changes": [{"field": "messages", "value": {"messages": [{}]}}]}],
                }
            ),
            "not_whatsapp_payload",
        ),
    ],
)
def test_not_a_whatsapp_payload(body: bytes, reason: str) -> None:
    with pytest.raises(WebhookShapeError) as caught:
        split(body)
    assert caught.value.reason == reason
    with pytest.raises(WebhookShapeError):
        phone_number_ids(body)


def test_other_fields_are_not_customer_events_but_are_reported() -> None:
    account_update = {"id": mp.WABA_ID, "changes": [{"field": "account_update", "value": {"event": "VERIFIED"}}]}
    body = mp.body(account_update, mp.entry(mp.value(messages=[mp.get("text")], contacts=[mp.contact()])))
    events = split(body)
    assert len(events) == 1 and events[0].entry_index == 1
    assert non_message_fields(parse_webhook(body)) == ["account_update"]


def test_unknown_meta_fields_are_kept() -> None:
    msg = mp.get("text")
    msg["brand_new_field"] = {"x": 1}
    body = mp.single(msg)
    body["entry"][0]["changes"][0]["value"]["future"] = True
    [event] = split(body)
    assert event.event["brand_new_field"] == {"x": 1}


def test_non_ascii_text_survives_bytes_split_and_record_round_trip() -> None:
    text = "Olá, ¿cómo estás? 你好 🙏🏽 مرحبا"
    raw = orjson.dumps(mp.single(mp.message("text", {"body": text})))
    [event] = split(raw)
    again = WebhookEvent.from_bytes(event.to_bytes())
    assert again == event
    record = normalize(again)
    assert isinstance(record, InboundMessage)
    assert record.payload == {"body": text}
    assert InboundMessage.from_bytes(record.to_bytes()) == record


def test_records_are_versioned_and_reject_unknown_versions_and_fields() -> None:
    [event] = split(mp.single(mp.get("image")))
    data = orjson.loads(event.to_bytes())
    assert data["v"] == 1
    assert "__faust" not in data
    with pytest.raises(pydantic.ValidationError):
        WebhookEvent.from_bytes(orjson.dumps({**data, "v": 2}))
    with pytest.raises(pydantic.ValidationError):
        WebhookEvent.from_bytes(orjson.dumps({**data, "surprise": 1}))


def test_archive_message_id_is_the_first_wamid_made_key_safe_or_a_hash() -> None:
    raw = orjson.dumps(mp.single(mp.message("text", {"body": "x"}, wamid="wamid.ab/c+d==")))
    assert archive_message_id(raw) == "wamid.ab_c_d=="
    assert archive_message_id(raw, parse_webhook(raw)) == "wamid.ab_c_d=="
    garbage = b"not json at all"
    hashed = archive_message_id(garbage)
    assert hashed.startswith("sha256-") and hashed == archive_message_id(garbage)
    assert hashed != archive_message_id(b"other garbage")
    errors_only = orjson.dumps(mp.body(mp.entry(mp.value(errors=[mp.meta_error(131000, "x")]))))
    assert archive_message_id(errors_only).startswith("sha256-")


# -- normalize ------------------------------------------------------------------------------------


def test_normalize_message_types_and_payloads() -> None:
    for name, msg in mp.MESSAGES.items():
        [event] = split(mp.single(mp.get(name)))
        record = normalize(event)
        assert isinstance(record, InboundMessage), name
        assert record.wamid == msg["id"]
        assert record.type == msg["type"]
        assert record.timestamp == int(mp.TIMESTAMP)
        assert record.contact_name == mp.NAME
        assert record.key == f"acme:{mp.WA_ID}"
        if msg["type"] in msg:
            assert record.payload == msg[msg["type"]], name
        assert record.context == msg.get("context")
        assert record.referral == msg.get("referral")


def test_normalize_keeps_message_errors() -> None:
    [event] = split(mp.single(mp.get("unsupported")))
    record = normalize(event)
    assert isinstance(record, InboundMessage)
    [error] = record.errors
    assert (error.code, error.title, error.details) == (
        131051,
        "Message type unknown",
        "Message type is currently not supported.",
    )


def test_normalize_status_with_errors_and_pricing() -> None:
    failed = mp.status("failed", errors=[mp.meta_error(131047, "Re-engagement message", "More than 24 hours")])
    delivered = mp.status("delivered")
    events = split(mp.body(mp.entry(mp.value(statuses=[failed, delivered]))))
    first, second = (normalize(e) for e in events)
    assert isinstance(first, StatusUpdate) and isinstance(second, StatusUpdate)
    assert first.status is MessageStatus.FAILED and first.errors[0].code == 131047
    assert first.dedupe_key == f"{mp.OUR_WAMID}:failed"
    assert second.status is MessageStatus.DELIVERED
    assert second.pricing == delivered["pricing"] and second.conversation == delivered["conversation"]
    assert second.timestamp == int(mp.TIMESTAMP)
    assert StatusUpdate.from_bytes(second.to_bytes()) == second


def test_normalize_rejects_unknown_status_and_malformed_events() -> None:
    [event] = split(mp.body(mp.entry(mp.value(statuses=[mp.status("exploded")]))))
    with pytest.raises(InvalidEventError) as caught:
        normalize(event)
    assert caught.value.reason == "unknown_status"
    bad = mp.message("text", {"body": "x"}, timestamp="yesterday")
    [event] = split(mp.single(bad))
    with pytest.raises(InvalidEventError) as caught:
        normalize(event)
    assert caught.value.reason == "invalid_message"


def test_normalize_value_level_error() -> None:
    body = mp.body(mp.entry(mp.value(errors=[mp.meta_error(131000, "Something went wrong", "retry")])))
    [event] = split(body)
    record = normalize(event)
    assert isinstance(record, BusinessError)
    assert record.customer_id == f"_business:{mp.PHONE_NUMBER_ID}"
    assert record.error.code == 131000 and record.error.details == "retry"
    assert BusinessError.from_bytes(record.to_bytes()) == record


def test_contact_wa_id_keys_the_customer_when_the_message_has_only_a_bsuid() -> None:
    msg = mp.message("text", {"body": "hi"}, from_=None, from_user_id=mp.BSUID)
    [event] = split(mp.single(msg, contacts=[mp.contact(mp.WA_ID, mp.NAME, mp.BSUID)]))
    assert event.customer_id == mp.WA_ID
    record = normalize(event)
    assert isinstance(record, InboundMessage) and record.wa_id == mp.WA_ID and record.bsuid == mp.BSUID


def test_contacts_are_matched_by_bsuid_among_several() -> None:
    other = "US.99999999999999999999"
    msgs = [
        mp.message("text", {"body": "1"}, wamid="wamid.1", from_=None, from_user_id=other),
        mp.message("text", {"body": "2"}, wamid="wamid.2", from_=None, from_user_id=mp.BSUID),
        mp.message("text", {"body": "3"}, wamid="wamid.3", from_=None, from_user_id="US.00000000000000000000"),
    ]
    contacts = [
        {"profile": {"name": "First"}, "user_id": mp.BSUID},
        {"profile": {"name": "Second"}, "user_id": other},
    ]
    events = split(mp.body(mp.entry(mp.value(messages=msgs, contacts=contacts))))
    assert [e.contact.name if e.contact else None for e in events] == ["Second", "First", None]
    assert [e.customer_id for e in events] == [other, mp.BSUID, "US.00000000000000000000"]


def preferences_body(items: list[object]) -> dict:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Sheena"}, "wa_id": mp.WA_ID}],
        "user_preferences": items,
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "user_preferences", "value": value}]}],
    }


def test_a_marketing_preference_change_is_a_customer_event() -> None:
    stop = {
        "wa_id": mp.WA_ID,
        "detail": "stopped",
        "category": "marketing_messages",
        "value": "stop",
        "timestamp": 1749416383,
    }
    [event] = split(preferences_body([stop]))
    assert event.kind is EventKind.PREFERENCE and event.key == f"acme:{mp.WA_ID}"
    record = normalize(event)
    assert isinstance(record, PreferenceUpdate)
    assert (record.category, record.preference, record.timestamp) == ("marketing_messages", "stop", 1749416383)
    assert non_message_fields(parse_webhook(preferences_body([stop]))) == []


@pytest.mark.parametrize(
    "item",
    [
        {"wa_id": mp.WA_ID, "category": "marketing_messages"},  # no value
        {"wa_id": mp.WA_ID, "category": ["x"], "value": "stop"},
        {"wa_id": mp.WA_ID, "category": "marketing_messages", "value": "stop", "timestamp": "soon"},
    ],
)
def test_a_malformed_preference_is_rejected_with_a_reason(item: dict) -> None:
    [event] = split(preferences_body([item]))
    with pytest.raises(InvalidEventError) as rejected:
        normalize(event)
    assert rejected.value.reason == "invalid_preference"


def test_a_preference_naming_no_customer_is_kept_and_rejected() -> None:
    [event] = split(preferences_body(["not an object"]))
    with pytest.raises(InvalidEventError):
        normalize(event)
