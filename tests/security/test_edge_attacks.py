"""The public webhook port, as an attacker and as a Meta app serving several tenants use it.

Each test runs a real edge over this test's schema, queues, bucket and Redis keys.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from tests.integration.edge_fixtures import (
    APP_SECRET,
    PHONE_NUMBER_ID,
    RunningEdge,
    archived,
    make_tenant,
    post_meta,
    save_tenants,
    serve_edge,
    webhook_body,
)
from wabridge.connectors import webhook
from wabridge.observability import ThrottledLog
from wabridge.schemas.meta import message_ids
from wabridge.settings import Settings
from wabridge.simulators.customer import InboundSpec
from wabridge.streams.topics import INBOUND_WHATSAPP_MESSAGES
from wabridge.tenants import Tenant

GLOBEX_NUMBER = "206540352242999"
INITECH_NUMBER = "306540352242777"
NOBODYS_NUMBER = "906540352240000"


def globex(**secrets: str) -> Tenant:
    tenant = make_tenant("globex", phone_number_id=GLOBEX_NUMBER)
    return tenant.model_copy(
        update={"secrets": tenant.secrets.model_copy(update={k: SecretStr(v) for k, v in secrets.items()})}
    )


def text(wamid: str) -> InboundSpec:
    return InboundSpec(kind="text", wa_id="16505551234", text=f"hello {wamid}", wamid=wamid)


def mixed(*parts: tuple[str, str]) -> bytes:
    """One POST with an entry per (phone_number_id, wamid), as one Meta app serving them sends it."""
    entries = []
    for number, wamid in parts:
        entries += orjson.loads(webhook_body(text(wamid), phone_number_id=number))["entry"]
    return orjson.dumps({"object": "whatsapp_business_account", "entry": entries})


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def fresh_refusal_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """The edge's throttled refusal log with no history, so this test sees its first line."""
    monkeypatch.setattr(webhook, "REFUSALS", ThrottledLog(webhook.log))


@pytest.fixture
async def edge(edge_settings: Settings) -> AsyncIterator[RunningEdge]:
    await save_tenants(edge_settings, make_tenant(), globex())
    async for running in serve_edge(edge_settings):
        yield running


async def queued_wamids(edge: RunningEdge) -> list[list[str]]:
    return [message_ids(m.body) for m in await edge.queued(INBOUND_WHATSAPP_MESSAGES)]


async def test_forged_and_cross_tenant_signatures_are_refused_and_nothing_is_kept(edge: RunningEdge) -> None:
    body = webhook_body(text("wamid.FORGED"))
    assert await post_meta(edge, body, secret="guessed-secret") == 401
    # Another tenant's app secret does not speak for acme's number.
    assert await post_meta(edge, body, secret="globex-secret") == 401
    # A signature header that is not ASCII is a wrong signature, not a 500.
    for value in ("sha256=\u00e9\u00e9\u00e9", "sha256=" + "\u0663" * 64, "\u202esha256=00"):
        async with edge.session.post(
            edge.url + "/webhook/meta", data=body, headers={"X-Hub-Signature-256": value}
        ) as response:
            assert response.status == 401, value
    # Meta's verify handshake with a non-ASCII or wrong token: 403, and no challenge echoed.
    for token in ("acme-verify-token\u00e9", "\u0000", "nope"):
        params = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "echo-me"}
        async with edge.session.get(edge.url + "/webhook/meta", params=params) as response:
            assert (response.status, "echo-me" in await response.text()) == (403, False), token
    assert await queued_wamids(edge) == []
    assert await archived(edge.settings) == {}


async def test_a_webhook_for_several_tenants_is_split_each_part_on_its_own(edge_settings: Settings) -> None:
    # One Meta app serves acme, globex and initech (disabled): one app secret for all three.
    initech = make_tenant("initech", phone_number_id=INITECH_NUMBER).model_copy(update={"active": False})
    shared = {"meta_app_secret": APP_SECRET}
    initech = initech.model_copy(
        update={"secrets": initech.secrets.model_copy(update={"meta_app_secret": SecretStr(APP_SECRET)})}
    )
    await save_tenants(edge_settings, make_tenant(), globex(**shared), initech)
    async for edge in serve_edge(edge_settings):
        body = mixed(
            (PHONE_NUMBER_ID, "wamid.ACME"),
            (GLOBEX_NUMBER, "wamid.GLOBEX"),
            (NOBODYS_NUMBER, "wamid.NOBODY"),
            (INITECH_NUMBER, "wamid.INITECH"),
        )
        assert await post_meta(edge, body) == 200
        queued = await edge.queued(INBOUND_WHATSAPP_MESSAGES)
        by_tenant = {orjson.loads(m.headers["tenants"]).popitem()[1]: m for m in queued}
        assert sorted(by_tenant) == ["acme", "globex"]
        # Each tenant's part carries its own changes only, and names only its own numbers.
        assert message_ids(by_tenant["acme"].body) == ["wamid.ACME"]
        assert message_ids(by_tenant["globex"].body) == ["wamid.GLOBEX"]
        assert orjson.loads(by_tenant["acme"].headers["tenants"]) == {PHONE_NUMBER_ID: "acme"}
        # Archived under each tenant's prefix, nothing of another tenant in it.
        for tenant_id, own, others in (
            ("acme", b"wamid.ACME", (b"wamid.GLOBEX", b"wamid.NOBODY", b"wamid.INITECH")),
            ("globex", b"wamid.GLOBEX", (b"wamid.ACME", b"wamid.NOBODY", b"wamid.INITECH")),
        ):
            documents = list((await archived(edge.settings, f"{tenant_id}/")).values())
            assert len(documents) == 1 and own in documents[0], tenant_id
            assert not any(other in documents[0] for other in others), tenant_id
        # The number nobody owns and the disabled tenant's part wait in the quarantine, for re-ingest.
        quarantined = await archived(edge.settings, "quarantine/")
        initech_parts = [d for k, d in quarantined.items() if k.startswith("quarantine/initech/")]
        assert len(initech_parts) == 1 and b"wamid.INITECH" in initech_parts[0]
        assert b"wamid.ACME" not in initech_parts[0]
        unknown_parts = [d for d in quarantined.values() if b"wamid.NOBODY" in d]
        assert len(unknown_parts) == 1 and b"wamid.GLOBEX" not in unknown_parts[0]
        break


async def test_one_tenants_app_cannot_slip_messages_in_for_another(edge: RunningEdge) -> None:
    # globex's app signs a POST that carries a message for acme's number next to its own.
    body = mixed((GLOBEX_NUMBER, "wamid.G-OWN"), (PHONE_NUMBER_ID, "wamid.INJECTED"))
    assert await post_meta(edge, body, secret="globex-secret") == 200
    assert await queued_wamids(edge) == [["wamid.G-OWN"]]
    assert not any(b"wamid.INJECTED" in d for d in (await archived(edge.settings, "acme/")).values())
    assert counter("wabridge_webhook_set_aside_total", reason="signature_mismatch") >= 1


async def test_anonymous_senders_cannot_enumerate_numbers_or_grow_anything(
    edge: RunningEdge, caplog: pytest.LogCaptureFixture, fresh_refusal_log: None
) -> None:
    lookups = {source: counter("wabridge_tenant_lookups_total", source=source) for source in ("postgres", "redis")}
    lists = counter("wabridge_tenant_lookups_total", source="number_list")
    caplog.set_level(logging.WARNING, logger="wabridge.connectors.webhook")
    statuses = set()
    started = time.monotonic()
    for n in range(300):
        number = f"5{n:014d}"
        body = webhook_body(text(f"wamid.ENUM{n}"), phone_number_id=number)
        statuses.add(await post_meta(edge, body, secret=uuid.uuid4().hex))
    assert statuses == {404}
    # No Redis or PostgreSQL lookup for any of them.
    for source, before in lookups.items():
        assert counter("wabridge_tenant_lookups_total", source=source) == before, source
    # The owned-number list is read at most once a second, however many numbers are made up.
    assert counter("wabridge_tenant_lookups_total", source="number_list") - lists <= time.monotonic() - started + 1
    # The directory keeps no entry for them, and the log did not grow a line per request.
    assert edge.deps is not None
    assert not any(number.startswith("5") for number in edge.deps.tenants.cached_numbers())
    refusals = [r for r in caplog.records if "no tenant owns it" in r.getMessage()]
    assert 1 <= len(refusals) <= 2


async def test_ids_from_unauthenticated_requests_cannot_forge_log_lines(
    edge: RunningEdge, caplog: pytest.LogCaptureFixture, fresh_refusal_log: None
) -> None:
    caplog.set_level(logging.INFO)
    forged = "123\n2026-12-03 00:00:00 INFO wabridge: tenant acme disabled by admin"
    body = webhook_body(text("wamid.LOG"), phone_number_id=forged)
    assert await post_meta(edge, body) in (401, 404)
    genesys = orjson.dumps({"id": "m\r\nforged", "channel": {"id": "i\nforged"}})
    async with edge.session.post(
        edge.url + "/webhook/genesys", data=genesys, headers={"X-Hub-Signature-256": "sha256=00"}
    ) as response:
        assert response.status == 404
    lines = [record.getMessage() for record in caplog.records]
    for line in lines:
        assert "\n" not in line and "\r" not in line, line
    # Both refusals were logged, the ids escaped.
    assert any("123\\n2026-12-03" in line for line in lines), lines
    assert any("i\\nforged" in line for line in lines), lines


async def test_the_webhook_port_answers_nothing_but_webhooks(edge: RunningEdge) -> None:
    async with aiohttp.ClientSession() as stranger:
        for path in ("/metrics", "/readyz", "/healthz", "/state/tables", "/auth/token", "/"):
            async with stranger.get(edge.url + path) as response:
                assert response.status in (404, 405), path
                assert b"wabridge_" not in await response.read()
