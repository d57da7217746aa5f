"""What the prepare stage reads from wa-inbound: each record kind, and anything else refused."""

from __future__ import annotations

import uuid

import orjson
import pydantic
import pytest

from tests.unit import meta_payloads as mp
from wabridge.agents.normalize import check_key, normalize_event
from wabridge.agents.prepare import decode_inbound
from wabridge.errors import PermanentError
from wabridge.schemas.meta import normalize, split_webhook
from wabridge.schemas.records import ConversationRef, InboundMessage, ResolvedMessage, StatusUpdate, WebhookEvent
from wabridge.tables.conversations import ConversationMapping, MappingMove


def bridge_events(body: dict) -> list[WebhookEvent]:
    return split_webhook(body, tenant_id="acme", webhook_id="wh-1", received_at=1749416384.5)


def test_a_bridge_event_and_the_records_of_the_replaced_topics_decode_to_their_kind() -> None:
    [event] = bridge_events(mp.single(mp.get("text")))
    assert decode_inbound(event.to_bytes()) == event
    message = normalize(event)
    assert isinstance(message, InboundMessage)
    # Records an earlier version put on wa-normalized / wa-resolved, redriven to wa-inbound.
    assert decode_inbound(message.to_bytes()) == message
    resolved = ResolvedMessage(message=message, conversation=ConversationRef(conversation_id=uuid.uuid4()))
    assert decode_inbound(resolved.to_bytes()) == resolved
    [status_event] = bridge_events(mp.body(mp.entry(mp.value(statuses=[mp.status("delivered")]))))
    assert isinstance(decode_inbound(normalize(status_event).to_bytes()), StatusUpdate)
    mapping = ConversationMapping.new_for(message)
    move = MappingMove(move_from_customer_id="old", mapping=mapping, moved_at=1.0, wamid=message.wamid)
    assert decode_inbound(move.to_bytes()) == move


@pytest.mark.parametrize(
    "raw",
    [b"", b"null", b"[1]", b'"text"', b"{", b'{"kind":"message"}', b'{"v":2,"wamid":"x"}', b'{"mapping":1}'],
)
def test_anything_else_is_refused_with_a_value_error(raw: bytes) -> None:
    with pytest.raises((ValueError, pydantic.ValidationError, orjson.JSONDecodeError)):
        decode_inbound(raw)


def test_a_record_under_another_customers_key_is_refused() -> None:
    [event] = bridge_events(mp.single(mp.get("text")))
    assert normalize_event(event, event.key).key == event.key
    for wrong in (None, "", b"acme:x", "acme:someone-else"):
        with pytest.raises(PermanentError):
            check_key(event.key, wrong)
