"""The genesys_events stage's handler in-process: Genesys's outbound webhook events, as the bridge
puts them on ``genesys-outbound``, in; agent messages on ``agent-messages`` and receipts in
``message_tracking`` out.

No Faust worker runs: the handler gets its events directly, as its lane would give them, with the
real broker and PostgreSQL (this test's topics and schema) behind it. The dedupe table is a dict,
which is what Faust's ``memory://`` table store holds. tests/pipeline/test_outbound.py runs the
same handler inside a worker, behind the real edge and bridge.
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
from wabridge.agents.context import StageContext
from wabridge.agents.genesys_events import GenesysEvents
from wabridge.schemas.genesys import OutboundEvent
from wabridge.settings import Settings
from wabridge.simulators.agent import build_agent_text, build_inbound_receipt
from wabridge.streams.app import create_app
from wabridge.streams.topics import AGENT_MESSAGES, ERROR_EVENTS, GENESYS_OUTBOUND

INTEGRATION = "integration-events-test"
CUSTOMER = "16505557799"


@dataclass
class Stage:
    handler: GenesysEvents
    ctx: StageContext
    settings: Settings

    def event(self, body: dict[str, Any], offset: int = 0) -> Event:
        """``body`` as the bridge's record of it (``connectors.bridge.genesys_records``)."""
        record = {"v": 1, "tenant_id": "acme", "customer_id": CUSTOMER, "received_at": time.time(), "event": body}
        key = f"acme:{CUSTOMER}"
        return Event(key, orjson.dumps(record), Position(self.settings.topic(GENESYS_OUTBOUND), 0, offset))


@pytest.fixture
async def stage(provisioned: Settings) -> AsyncIterator[Stage]:
    app = create_app(provisioned)
    ctx = StageContext(app, provisioned)
    handler = GenesysEvents(app, ctx)
    handler.seen.table = {}  # type: ignore[assignment]  # what the memory:// store holds
    await app.producer.start()
    try:
        yield Stage(handler, ctx, provisioned)
    finally:
        await app.producer.stop()
        await ctx.close()


def events(kind: str, outcome: str) -> float:
    return counter("wabridge_genesys_events_total", kind=kind, outcome=outcome)


async def test_an_agent_message_is_recorded_once_for_the_outbound_stage(stage: Stage) -> None:
    body = build_agent_text(integration_id=INTEGRATION, to_id=CUSTOMER, text="Hello from the agent")
    await stage.handler.handle(stage.event(body))
    # Genesys retries a webhook it got no 200 for: the same event again is recognised.
    before = events("text", "duplicate")
    await stage.handler.handle(stage.event(body, offset=1))
    assert events("text", "duplicate") == before + 1

    [record] = await read_topic(stage.settings, AGENT_MESSAGES, expected=1)
    event = OutboundEvent.model_validate_json(record.value)  # type: ignore[attr-defined]
    assert (event.id, event.text, event.key) == (body["id"], "Hello from the agent", f"acme:{CUSTOMER}")


async def test_a_receipt_moves_the_tracking_of_the_message_it_names(stage: Stage) -> None:
    wamid, genesys_id = f"wamid.{uuid.uuid4().hex}", uuid.uuid4().hex
    pool = await stage.ctx.pool()
    await pool.execute(
        "INSERT INTO message_tracking (message_id, direction, tenant_id, customer_id, status, meta_message_id,"
        " genesys_message_id) VALUES ($1, 'inbound', 'acme', $2, 'sent', $1, $3)",
        wamid, CUSTOMER, genesys_id,
    )  # fmt: skip
    receipt = build_inbound_receipt(
        integration_id=INTEGRATION, genesys_message_id=genesys_id, wamid=wamid, to_id=CUSTOMER
    )
    await stage.handler.handle(stage.event(receipt))
    row = await pool.fetchrow("SELECT status FROM message_tracking WHERE message_id = $1", wamid)
    assert row is not None and row["status"] == "delivered"

    # A receipt for a message nobody tracked is counted and logged, not an error.
    before = events("receipt", "unknown_message")
    stray = build_inbound_receipt(
        integration_id=INTEGRATION, genesys_message_id=uuid.uuid4().hex, wamid="wamid.unknown", to_id=CUSTOMER
    )
    await stage.handler.handle(stage.event(stray, offset=1))
    assert events("receipt", "unknown_message") == before + 1


async def test_a_record_that_is_not_a_genesys_event_is_routed_not_raised(stage: Stage) -> None:
    garbage = Event(f"acme:{CUSTOMER}", b'{"v": 1, "tenant_id": "acme"}', Position(GENESYS_OUTBOUND, 0, 5))
    await stage.handler.handle(garbage)
    [record] = await read_topic(stage.settings, ERROR_EVENTS, expected=1)
    routed = orjson.loads(record.value)  # type: ignore[attr-defined]
    assert (routed["stage"], routed["reason"], routed["offset"]) == ("genesys_events", "invalid_record", 5)
