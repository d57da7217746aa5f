"""The deliver stage's handler in-process: one ``wa-ready`` record in, Genesys and tracking out.

No Faust worker runs: the handler gets its events directly, as its lane would give them, with the
real Genesys simulator, PostgreSQL (this test's schema), Redis and broker behind it. The
conversations table is a dict, which is what Faust's ``memory://`` table store holds. The
whole-pipeline tests (tests/pipeline) run the same handler inside a worker.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import pytest
from prometheus_client import REGISTRY

from tests.integration.edge_fixtures import read_topic, save_tenants
from tests.unit import meta_payloads as mp
from tests.unit.test_transform_inbound import inbound
from wabridge.agents.context import StageContext
from wabridge.agents.deliver import Deliverer
from wabridge.connectors.genesys import GenesysClient
from wabridge.schemas.records import ConversationRef, ReadyMessage
from wabridge.settings import Settings
from wabridge.simulators import GenesysSimulator
from wabridge.streams.app import create_app
from wabridge.streams.topics import ERROR_EVENTS, WA_READY
from wabridge.tables.delivery import BEGIN_DELIVERY, DeliveryAttempt
from wabridge.tenants import Tenant

from .conftest import GENESYS_INTEGRATION_A, genesys_tenant


@dataclass(frozen=True)
class Position:
    topic: str
    partition: int = 0
    offset: int = 0


@dataclass(frozen=True)
class Event:
    """What a lane hands the handler: the record's key, bytes and position."""

    key: str
    value: bytes
    message: Position


@dataclass
class Stage:
    deliverer: Deliverer
    ctx: StageContext
    settings: Settings

    def event(self, ready: ReadyMessage, offset: int = 0) -> Event:
        return Event(ready.key, ready.to_bytes(), Position(self.settings.topic(WA_READY), 0, offset))

    async def tracked(self, wamid: str) -> asyncpg.Record | None:
        return await (await self.ctx.pool()).fetchrow(
            "SELECT status, genesys_message_id, delivery_attempts, error FROM message_tracking WHERE message_id = $1",
            wamid,
        )


@pytest.fixture
async def stage(
    provisioned: Settings, genesys_client: GenesysClient, genesys_tenant_a: Tenant, genesys_sim: GenesysSimulator
) -> AsyncIterator[Stage]:
    nowhere = genesys_tenant(
        "nowhere", client_id="client-a", client_secret="client-secret-a",
        integration_id=str(uuid.uuid4()), api_url=genesys_sim.url,
    )  # fmt: skip
    await save_tenants(provisioned, genesys_tenant_a, nowhere)
    ctx = StageContext(create_app(provisioned), provisioned)
    conversations: dict[str, Any] = {}
    try:
        yield Stage(Deliverer(ctx, genesys_client, conversations), ctx, provisioned)  # type: ignore[arg-type]
    finally:
        await ctx.close()


def ready_text(text: str, tenant_id: str = "acme") -> ReadyMessage:
    message = inbound(mp.message("text", text={"body": text}, wamid=f"wamid.{uuid.uuid4().hex}"))
    message = message.model_copy(update={"tenant_id": tenant_id})
    return ReadyMessage(message=message, conversation=ConversationRef(conversation_id=uuid.uuid4()))


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_message_reaches_genesys_once_and_is_tracked_sent(stage: Stage, genesys_sim: GenesysSimulator) -> None:
    ready = ready_text("where is my order?")
    await stage.deliverer.handle(stage.event(ready))
    [accepted] = genesys_sim.accepted(GENESYS_INTEGRATION_A)
    assert accepted.body["text"] == "where is my order?"
    assert accepted.body["channel"]["messageId"] == ready.message.wamid
    row = await stage.tracked(ready.message.wamid)
    assert row is not None and row["status"] == "sent" and row["genesys_message_id"]

    # The same record again (a redelivery after a rebalance, a replay): Genesys has it, no POST.
    before = counter("wabridge_deliver_messages_total", tenant="acme", outcome="already_delivered")
    await stage.deliverer.handle(stage.event(ready, offset=1))
    assert len(genesys_sim.accepted(GENESYS_INTEGRATION_A)) == 1
    assert counter("wabridge_deliver_messages_total", tenant="acme", outcome="already_delivered") == before + 1


async def test_an_attempt_whose_answer_was_lost_is_sent_again_and_counted(
    stage: Stage, genesys_sim: GenesysSimulator
) -> None:
    ready = ready_text("did you get this?")
    # A worker began this delivery and died before Genesys's answer: the attempt is recorded.
    await stage.ctx.write(
        "deliver", BEGIN_DELIVERY, DeliveryAttempt("acme", ready.message.wamid, ready.message.customer_id)
    )
    before = counter("wabridge_deliver_unconfirmed_resends_total", tenant="acme")
    await stage.deliverer.handle(stage.event(ready))
    assert len(genesys_sim.accepted(GENESYS_INTEGRATION_A)) == 1
    assert counter("wabridge_deliver_unconfirmed_resends_total", tenant="acme") == before + 1
    row = await stage.tracked(ready.message.wamid)
    assert row is not None and (row["status"], row["delivery_attempts"]) == ("sent", 2)


async def test_a_message_genesys_refuses_is_tracked_failed_with_the_reason_and_routed(stage: Stage) -> None:
    await stage.ctx.app.producer.start()
    try:
        ready = ready_text("to an integration that does not exist", tenant_id="nowhere")
        await stage.deliverer.handle(stage.event(ready, offset=7))
    finally:
        await stage.ctx.app.producer.stop()
    row = await stage.tracked(ready.message.wamid)
    assert row is not None and row["status"] == "failed" and row["genesys_message_id"] is None
    assert orjson.loads(row["error"])["reason"].startswith("genesys_")
    [record] = await read_topic(stage.settings, ERROR_EVENTS, expected=1)
    routed = orjson.loads(record.value)  # type: ignore[attr-defined]
    assert (routed["stage"], routed["message_id"], routed["offset"]) == ("deliver", ready.message.wamid, 7)


async def test_a_record_that_is_not_a_ready_message_is_routed_not_raised(stage: Stage) -> None:
    await stage.ctx.app.producer.start()
    try:
        garbage = Event("acme:1", b'{"v": 1, "message": "nope"}', Position(stage.settings.topic(WA_READY), 0, 3))
        await stage.deliverer.handle(garbage)
    finally:
        await stage.ctx.app.producer.stop()
    [record] = await read_topic(stage.settings, ERROR_EVENTS, expected=1)
    assert orjson.loads(record.value)["reason"] == "invalid_record"  # type: ignore[attr-defined]
