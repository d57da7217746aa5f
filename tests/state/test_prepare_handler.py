"""The prepare stage's handler in-process: the bridge's ``WebhookEvent`` records in, ready messages
on ``wa-ready``, conversations and tracking out.

No Faust worker runs: the handler gets its events directly, as its lane would give them, with the
real broker, PostgreSQL (this test's topics and schema) and Redis behind it. Its two tables (the
conversations and the seen ids) are dicts, which is what Faust's ``memory://`` table store holds.
tests/pipeline runs the same handler inside a worker behind the real edge and bridge.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from tests.delivery.test_deliver_handler import Event, Position, counter
from tests.integration.edge_fixtures import read_topic
from tests.unit import meta_payloads as mp
from wabridge.agents.context import StageContext
from wabridge.agents.prepare import Preparer
from wabridge.schemas.meta import split_webhook
from wabridge.schemas.records import ReadyMessage, WebhookEvent
from wabridge.settings import Settings
from wabridge.streams.app import create_app
from wabridge.streams.topics import ERROR_EVENTS, WA_INBOUND, WA_READY

CUSTOMER = "16505557711"


@dataclass
class Stage:
    preparer: Preparer
    ctx: StageContext
    settings: Settings
    conversations: dict[str, Any]

    def event(self, record: WebhookEvent, offset: int = 0) -> Event:
        return Event(record.key, record.to_bytes(), Position(self.settings.topic(WA_INBOUND), 0, offset))


def customer_text(text: str) -> WebhookEvent:
    """One text message of CUSTOMER, as the bridge puts it on wa-inbound."""
    message = mp.message("text", {"body": text}, wamid=f"wamid.{uuid.uuid4().hex}", from_=CUSTOMER, from_user_id=None)
    body = mp.single(message, contacts=[mp.contact(wa_id=CUSTOMER, user_id=None)])
    [record] = split_webhook(body, tenant_id="acme", webhook_id=uuid.uuid4().hex, received_at=time.time())
    return record


@pytest.fixture
async def stage(provisioned: Settings) -> AsyncIterator[Stage]:
    app = create_app(provisioned)
    ctx = StageContext(app, provisioned)
    preparer = Preparer(app, ctx)
    conversations: dict[str, Any] = {}  # what the memory:// store holds
    preparer.resolver.table = conversations  # type: ignore[assignment]
    preparer.seen.table = {}  # type: ignore[assignment]
    await app.producer.start()
    try:
        yield Stage(preparer, ctx, provisioned, conversations)
    finally:
        await app.producer.stop()
        await preparer.close()
        await ctx.close()


def duplicates() -> float:
    return counter("wabridge_normalize_duplicates_total", kind="message")


async def test_messages_are_made_ready_once_in_one_conversation_and_tracked(stage: Stage) -> None:
    first, second = customer_text("hello"), customer_text("are you there?")
    await stage.preparer.handle(stage.event(first))
    before = duplicates()
    await stage.preparer.handle(stage.event(first, offset=1))  # Meta delivered the webhook twice
    assert duplicates() == before + 1
    await stage.preparer.handle(stage.event(second, offset=2))

    records = await read_topic(stage.settings, WA_READY, expected=2)
    ready = [ReadyMessage.model_validate_json(r.value) for r in records]  # type: ignore[attr-defined]
    assert [r.message.payload["body"] for r in ready] == ["hello", "are you there?"]  # type: ignore[call-overload]
    assert len({r.conversation.conversation_id for r in ready}) == 1
    assert {r.key for r in ready} == {f"acme:{CUSTOMER}"}
    # The conversation is in the table and in PostgreSQL; each message is tracked as received.
    assert set(stage.conversations) == {f"acme:{CUSTOMER}"}
    pool = await stage.ctx.pool()
    mapped = await pool.fetchval(
        "SELECT conversation_id FROM conversation_mappings WHERE tenant_id = 'acme' AND customer_id = $1", CUSTOMER
    )
    assert mapped == ready[0].conversation.conversation_id
    rows = await pool.fetch("SELECT message_id, status FROM message_tracking WHERE customer_id = $1", CUSTOMER)
    assert {(r["message_id"], r["status"]) for r in rows} == {
        (first.event["id"], "received"), (second.event["id"], "received")
    }  # fmt: skip


async def test_a_record_that_is_not_a_wa_inbound_record_is_routed_not_raised(stage: Stage) -> None:
    garbage = Event(f"acme:{CUSTOMER}", b'["not", "a", "record"]', Position(stage.settings.topic(WA_INBOUND), 0, 9))
    await stage.preparer.handle(garbage)
    [record] = await read_topic(stage.settings, ERROR_EVENTS, expected=1)
    routed = orjson.loads(record.value)  # type: ignore[attr-defined]
    assert (routed["reason"], routed["offset"]) == ("invalid_record", 9)
    assert await read_topic(stage.settings, WA_READY, expected=0, timeout_s=1.0) == []
