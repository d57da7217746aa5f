"""The outbound stage's handler in-process: an agent's event from ``agent-messages`` in, WhatsApp
and Genesys receipts out.

No Faust worker runs: the handler gets its events as its lane would, with the real Meta and
Genesys simulators, PostgreSQL (this test's schema), Redis and S3 behind it. The conversations
table is a dict, which is what Faust's ``memory://`` table store holds. tests/pipeline runs the
same handler inside a worker.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from tests.delivery.conftest import GENESYS_CLIENT_A, GENESYS_INTEGRATION_A, GENESYS_SECRET_A, genesys_tenant
from tests.delivery.test_deliver_handler import Event, Position
from tests.integration.edge_fixtures import save_tenants
from wabridge.agents.context import StageContext
from wabridge.agents.outbound import Sender
from wabridge.connectors.genesys import GenesysClient
from wabridge.schemas.genesys import parse_outbound_webhook
from wabridge.settings import Settings
from wabridge.simulators import GenesysSimulator, MetaSimulator
from wabridge.simulators.agent import build_agent_text
from wabridge.simulators.meta_config import MetaPhoneNumber, MetaSimConfig
from wabridge.streams.app import create_app
from wabridge.streams.topics import AGENT_MESSAGES
from wabridge.tables.conversations import ConversationMapping
from wabridge.tenants import PhoneNumber, Tenant

PHONE_NUMBER_ID = "106540352242922"
TOKEN = "fake-whatsapp-token-sender"
CUSTOMER = "16505557788"


@dataclass
class Stage:
    sender: Sender
    ctx: StageContext
    settings: Settings
    conversations: dict[str, Any]

    def agent_text(self, text: str, offset: int = 0) -> Event:
        body = build_agent_text(integration_id=GENESYS_INTEGRATION_A, to_id=CUSTOMER, text=text)
        event = parse_outbound_webhook(body, tenant_id="acme")
        return Event(event.key, event.to_bytes(), Position(self.settings.topic(AGENT_MESSAGES), 0, offset))

    def customer_wrote(self, seconds_ago: float) -> None:
        at = time.time() - seconds_ago
        mapping = ConversationMapping(
            tenant_id="acme", customer_id=CUSTOMER, conversation_id=uuid.uuid4(), wa_id=CUSTOMER,
            phone_number_id=PHONE_NUMBER_ID, created_at=at, last_activity_at=at,
            last_customer_message_at=at, last_customer_message_id=f"wamid.{uuid.uuid4().hex}",
        )  # fmt: skip
        self.conversations[mapping.key] = mapping.to_table()


@pytest.fixture
async def meta() -> AsyncIterator[MetaSimulator]:
    number = MetaPhoneNumber(
        phone_number_id=PHONE_NUMBER_ID, access_token=SecretStr(TOKEN), app_secret=SecretStr("fake-app-secret")
    )
    config = MetaSimConfig(phone_numbers=[number], read_after_s=None, webhook_retries=0)
    async with MetaSimulator(config, seed=7).serve() as simulator:
        yield simulator


@pytest.fixture
async def stage(
    provisioned: Settings, genesys_client: GenesysClient, genesys_sim: GenesysSimulator, meta: MetaSimulator
) -> AsyncIterator[Stage]:
    tenant: Tenant = genesys_tenant(
        "acme", client_id=GENESYS_CLIENT_A, client_secret=GENESYS_SECRET_A,
        integration_id=GENESYS_INTEGRATION_A, api_url=genesys_sim.url,
    )  # fmt: skip
    tenant = tenant.model_copy(
        update={
            "phone_numbers": (PhoneNumber(phone_number_id=PHONE_NUMBER_ID, display_phone_number="15550783881"),),
            "config": tenant.config.model_copy(update={"meta_graph_url": meta.url}),
            "secrets": tenant.secrets.model_copy(update={"meta_access_token": SecretStr(TOKEN)}),
        }
    )
    await save_tenants(provisioned, tenant)
    # Agent attachments come from the Genesys simulator: plain http on loopback, as in the embedded stack.
    provisioned = provisioned.model_copy(update={"genesys_attachment_insecure_origins": genesys_sim.url})
    ctx = StageContext(create_app(provisioned), provisioned)
    conversations: dict[str, Any] = {}
    sender = Sender(ctx, genesys_client, conversations)  # type: ignore[arg-type]
    try:
        yield Stage(sender, ctx, provisioned, conversations)
    finally:
        await sender.close()
        await ctx.close()


async def test_an_agent_text_reaches_the_customer_once(stage: Stage, meta: MetaSimulator) -> None:
    stage.customer_wrote(seconds_ago=60)
    event = stage.agent_text("Your order ships today.")
    await stage.sender.handle(event)
    [sent] = meta.sent_messages(PHONE_NUMBER_ID)
    assert (sent.to, sent.body["text"]["body"]) == (CUSTOMER, "Your order ships today.")
    # The same record again (a redelivery after a rebalance, a replay): not sent twice.
    await stage.sender.handle(Event(event.key, event.value, Position(event.message.topic, 0, 1)))
    assert len(meta.sent_messages(PHONE_NUMBER_ID)) == 1


async def test_a_replay_after_the_window_closed_tells_the_agent_nothing_false(
    stage: Stage, meta: MetaSimulator, genesys_sim: GenesysSimulator
) -> None:
    stage.customer_wrote(seconds_ago=60)
    event = stage.agent_text("Your order ships today.")
    await stage.sender.handle(event)
    assert len(meta.sent_messages(PHONE_NUMBER_ID)) == 1
    # A day later the window is closed, and the record is replayed: it was sent, so nothing is said.
    stage.customer_wrote(seconds_ago=25 * 3600)
    await stage.sender.handle(Event(event.key, event.value, Position(event.message.topic, 0, 1)))
    assert len(meta.sent_messages(PHONE_NUMBER_ID)) == 1
    assert genesys_sim.accepted(GENESYS_INTEGRATION_A, kind="receipt") == []


async def test_a_send_again_after_metas_5xx_is_counted_and_logged_as_a_resend(
    stage: Stage, meta: MetaSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    stage.customer_wrote(seconds_ago=60)
    before = REGISTRY.get_sample_value("wabridge_resends_total", {"stage": "outbound", "tenant": "acme"}) or 0.0
    meta.fault_next_sends(PHONE_NUMBER_ID, 500, 1)  # Meta answers 500: it may have taken the message
    with caplog.at_level(logging.WARNING, logger="wabridge.agents.context"):
        await stage.sender.handle(stage.agent_text("Sorry for the wait."))
    assert len(meta.sent_messages(PHONE_NUMBER_ID)) == 1  # the second attempt went through
    after = REGISTRY.get_sample_value("wabridge_resends_total", {"stage": "outbound", "tenant": "acme"})
    assert after == before + 1
    assert "sent again after an attempt the peer may have taken" in caplog.text


async def test_outside_the_window_nothing_is_sent_and_genesys_is_told_why(
    stage: Stage, meta: MetaSimulator, genesys_sim: GenesysSimulator
) -> None:
    stage.customer_wrote(seconds_ago=25 * 3600)
    await stage.sender.handle(stage.agent_text("Are you still there?"))
    assert meta.sent_messages(PHONE_NUMBER_ID) == []
    [receipt] = genesys_sim.accepted(GENESYS_INTEGRATION_A, kind="receipt")
    assert receipt.body["status"] == "Failed"
    assert [r["code"] for r in receipt.body["reasons"]] == ["MessageExpired"]
