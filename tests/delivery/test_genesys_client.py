"""The Genesys client and its per-tenant OAuth against the real Genesys simulator and the real Redis."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis

from tests.delivery.conftest import (
    GENESYS_CLIENT_A,
    GENESYS_CLIENT_B,
    GENESYS_INTEGRATION_A,
    GENESYS_INTEGRATION_B,
    GENESYS_SECRET_A,
    genesys_sim_config,
    genesys_tenant,
)
from tests.simulators.conftest import eventually
from wabridge.connectors import postgres, redis_client
from wabridge.connectors.genesys import (
    GenesysAuth,
    GenesysClient,
    backoff_delays,
    cache_ttl_ms,
)
from wabridge.connectors.tenant_directory import TenantDirectory
from wabridge.errors import PermanentError, TenantHeld, TransientError
from wabridge.schemas.records import InboundMessage
from wabridge.settings import Settings
from wabridge.simulators import GenesysSimulator
from wabridge.simulators.faults import FaultPlan, Latency
from wabridge.simulators.hosting import serve_app
from wabridge.simulators.inspection import RecordedRequest
from wabridge.streams import internal_auth
from wabridge.streams.app import create_app
from wabridge.streams.auth_api import register_auth_api
from wabridge.tenants import SecretBox, Tenant, TenantStore
from wabridge.transforms import to_open_messages

WA_ID = "16505551234"
LOGIN_PATH = "/oauth/token"


def message_body(tenant_id: str, wamid: str, text: str = "Hello, I need help") -> dict[str, Any]:
    """A real ``OpenInboundNormalizedMessage``, built by the transform the deliver stage uses."""
    msg = InboundMessage(
        wamid=wamid,
        tenant_id=tenant_id,
        customer_id=WA_ID,
        wa_id=WA_ID,
        type="text",
        timestamp=1749416383,
        contact_name="Sheena Nelson",
        phone_number_id="106540352242922",
        payload={"body": text},
        webhook_id="wh-1",
        received_at=0.0,
    )
    [body] = to_open_messages(msg)
    return body


def logins(sim: GenesysSimulator, client_id: str | None = None) -> int:
    """Token requests the simulator received (for one OAuth client when given)."""
    return len(sim.requests.select(path=LOGIN_PATH, tag=client_id))


def inbound_requests(sim: GenesysSimulator, integration_id: str) -> list[RecordedRequest]:
    return sim.requests.select(path=f"/api/v2/conversations/messages/{integration_id}/inbound/open/message")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SLOW_LOGIN = FaultPlan(latency=Latency(kind="fixed", ms=200))


# --- tokens -----------------------------------------------------------------------------------


def auth_for(redis: aioredis.Redis, settings: Settings) -> GenesysAuth:
    """Another process's ``GenesysAuth`` over the same Redis and keyring."""
    return GenesysAuth(redis, SecretBox.from_settings(settings), settings)


def cached_token(raw: bytes, settings: Settings) -> str:
    """The token in a ``tenant:{id}:oauth:token`` entry, which never holds it in clear."""
    document = orjson.loads(raw)
    token = SecretBox.from_settings(settings).decrypt(document["token"])
    assert token.encode() not in raw
    return token


async def test_token_is_cached_in_redis_for_expires_in_minus_300_s(
    genesys_sim: GenesysSimulator,
    genesys_auth: GenesysAuth,
    genesys_tenant_a: Tenant,
    delivery_redis: aioredis.Redis,
    isolated_settings: Settings,
) -> None:
    token = await genesys_auth.token(genesys_tenant_a)

    key = isolated_settings.redis_key("tenant:acme:oauth:token")
    raw = await delivery_redis.get(key)
    cached = orjson.loads(raw)
    ttl_ms = await delivery_redis.pttl(key)
    assert cached_token(raw, isolated_settings) == token
    assert 86_100_000 - 60_000 < ttl_ms <= 86_100_000
    assert abs(cached["expiresAt"] - (time.time() + 86_400)) < 60
    assert await genesys_auth.token(genesys_tenant_a) == token
    assert logins(genesys_sim) == 1

    # Another worker finds it in Redis and does not log in.
    other = auth_for(delivery_redis, isolated_settings)
    try:
        assert await other.token(genesys_tenant_a) == token
    finally:
        await other.close()
    assert logins(genesys_sim) == 1


def test_short_lived_tokens_are_cached_for_half_their_life() -> None:
    assert cache_ttl_ms(86_400) == 86_100_000
    assert cache_ttl_ms(3_600) == 3_300_000
    assert cache_ttl_ms(400) == 200_000
    assert cache_ttl_ms(1) == 500
    assert cache_ttl_ms(0) == 1


async def test_fifty_concurrent_callers_on_a_cold_cache_cause_one_login(
    genesys_sim: GenesysSimulator, genesys_auth: GenesysAuth, genesys_tenant_a: Tenant
) -> None:
    genesys_sim.set_faults("client", GENESYS_CLIENT_A, SLOW_LOGIN)

    tokens = await asyncio.gather(*(genesys_auth.token(genesys_tenant_a) for _ in range(50)))

    assert len(set(tokens)) == 1
    assert logins(genesys_sim, GENESYS_CLIENT_A) == 1


async def test_two_workers_on_a_cold_cache_cause_one_login(
    genesys_sim: GenesysSimulator, genesys_tenant_a: Tenant, isolated_settings: Settings, delivery_redis: aioredis.Redis
) -> None:
    genesys_sim.set_faults("client", GENESYS_CLIENT_A, SLOW_LOGIN)
    # Each "worker" with its own Redis connection and its own HTTP pool, as two processes would have.
    redis_two = redis_client.client(isolated_settings)
    worker_one = auth_for(delivery_redis, isolated_settings)
    worker_two = auth_for(redis_two, isolated_settings)
    try:
        tokens = await asyncio.gather(
            *(worker.token(genesys_tenant_a) for _ in range(25) for worker in (worker_one, worker_two))
        )
    finally:
        await worker_one.close()
        await worker_two.close()
        await redis_two.aclose()

    assert len(set(tokens)) == 1
    assert logins(genesys_sim, GENESYS_CLIENT_A) == 1


async def test_tokens_are_per_tenant(
    genesys_sim: GenesysSimulator, genesys_auth: GenesysAuth, genesys_tenant_a: Tenant, genesys_tenant_b: Tenant
) -> None:
    token_a, token_b = await asyncio.gather(genesys_auth.token(genesys_tenant_a), genesys_auth.token(genesys_tenant_b))
    assert token_a != token_b
    assert (logins(genesys_sim, GENESYS_CLIENT_A), logins(genesys_sim, GENESYS_CLIENT_B)) == (1, 1)


async def test_wrong_client_secret_holds_the_tenant(
    genesys_sim: GenesysSimulator, genesys_auth: GenesysAuth, genesys_client: GenesysClient
) -> None:
    tenant = genesys_tenant(
        "acme",
        client_id=GENESYS_CLIENT_A,
        client_secret="not-the-secret",
        integration_id=GENESYS_INTEGRATION_A,
        api_url=genesys_sim.url,
    )
    with pytest.raises(TenantHeld) as refused:
        await genesys_auth.token(tenant)
    assert refused.value.reason == "genesys_auth_failed"
    assert refused.value.tenant_id == "acme"
    assert "not-the-secret" not in str(refused.value)

    with pytest.raises(TenantHeld) as send_refused:
        await genesys_client.send_inbound_message(tenant, message_body(tenant.id, "wamid.1"))
    assert send_refused.value.reason == "genesys_auth_failed"
    assert genesys_sim.accepted() == []


async def test_login_host_errors_are_transient_and_free_the_lock(
    genesys_sim: GenesysSimulator, genesys_auth: GenesysAuth, genesys_tenant_a: Tenant
) -> None:
    genesys_sim.set_faults("client", GENESYS_CLIENT_A, FaultPlan(error_rate=1.0, error_status=503))
    with pytest.raises(TransientError):
        await genesys_auth.token(genesys_tenant_a)

    genesys_sim.set_faults("client", GENESYS_CLIENT_A, None)
    started = time.monotonic()
    assert await genesys_auth.token(genesys_tenant_a)
    # The failed refresh released the Redis lock: no wait for its expiry (15 s here).
    assert time.monotonic() - started < 5


async def test_unreachable_login_host_is_transient(genesys_auth: GenesysAuth, genesys_tenant_a: Tenant) -> None:
    tenant = genesys_tenant_a.model_copy(
        update={
            "config": genesys_tenant_a.config.model_copy(
                update={"genesys_login_url": f"http://127.0.0.1:{free_port()}"}
            )
        }
    )
    with pytest.raises(TransientError):
        await genesys_auth.token(tenant)


async def test_without_redis_tokens_still_come_once_per_process(
    genesys_sim: GenesysSimulator, genesys_tenant_a: Tenant, isolated_settings: Settings
) -> None:
    down = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5, socket_timeout=0.5)
    auth = auth_for(down, isolated_settings)
    try:
        tokens = await asyncio.gather(*(auth.token(genesys_tenant_a) for _ in range(10)))
    finally:
        await auth.close()
        await down.aclose()
    assert len(set(tokens)) == 1
    assert logins(genesys_sim, GENESYS_CLIENT_A) == 1


# --- sending ------------------------------------------------------------------------------------


async def test_a_message_is_accepted_and_its_ids_returned(
    genesys_sim: GenesysSimulator, genesys_client: GenesysClient, genesys_tenant_a: Tenant
) -> None:
    body = message_body(genesys_tenant_a.id, "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFF")

    result = await genesys_client.send_inbound_message(genesys_tenant_a, body)

    [accepted] = genesys_sim.accepted(GENESYS_INTEGRATION_A, "message")
    assert accepted.body == body
    assert result.genesys_message_id == accepted.genesys_id
    assert (
        result.conversation_id == accepted.conversation_id == genesys_sim.conversation_id(GENESYS_INTEGRATION_A, WA_ID)
    )
    [request] = inbound_requests(genesys_sim, GENESYS_INTEGRATION_A)
    assert request.query == {"prefetchConversationId": "true"}
    assert request.headers["Authorization"].startswith("Bearer ")


async def test_a_receipt_is_accepted(
    genesys_sim: GenesysSimulator, genesys_client: GenesysClient, genesys_tenant_a: Tenant
) -> None:
    receipt = {
        "id": "9d2c1f0e5b6a4c3d8e7f6a5b4c3d2e1f",
        "channel": {"to": {"id": WA_ID, "idType": "Phone"}, "time": "2025-06-08T21:39:43.000Z"},
        "status": "Delivered",
        "direction": "Outbound",
        "isFinalReceipt": True,
    }

    result = await genesys_client.send_receipt(genesys_tenant_a, receipt)

    [accepted] = genesys_sim.accepted(GENESYS_INTEGRATION_A, "receipt")
    assert accepted.body == receipt
    assert result.genesys_message_id == receipt["id"]


async def test_a_revoked_token_is_refreshed_once_for_many_concurrent_sends(
    genesys_sim: GenesysSimulator,
    genesys_client: GenesysClient,
    genesys_tenant_a: Tenant,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="wabridge")
    await genesys_client.send_inbound_message(genesys_tenant_a, message_body(genesys_tenant_a.id, "wamid.first"))
    assert genesys_sim.revoke_tokens(GENESYS_CLIENT_A) == 1

    wamids = [f"wamid.after-revoke.{i}" for i in range(20)]
    results = await asyncio.gather(
        *(genesys_client.send_inbound_message(genesys_tenant_a, message_body(genesys_tenant_a.id, w)) for w in wamids)
    )

    assert logins(genesys_sim, GENESYS_CLIENT_A) == 2
    assert all(result.genesys_message_id for result in results)
    accepted = [item.body["channel"]["messageId"] for item in genesys_sim.accepted(GENESYS_INTEGRATION_A, "message")]
    assert sorted(accepted) == sorted(["wamid.first", *wamids])
    # The logs name the tenant and the message, never a token or the client secret.
    tokens = {request.headers["Authorization"] for request in inbound_requests(genesys_sim, GENESYS_INTEGRATION_A)}
    assert "acme" in caplog.text and "wamid.after-revoke." in caplog.text
    assert GENESYS_SECRET_A not in caplog.text
    assert not any(token.removeprefix("Bearer ") in caplog.text for token in tokens)


async def test_a_token_another_worker_refreshed_is_picked_up_without_a_login(
    genesys_sim: GenesysSimulator, genesys_tenant_a: Tenant, isolated_settings: Settings, delivery_redis: aioredis.Redis
) -> None:
    auth_one, auth_two = auth_for(delivery_redis, isolated_settings), auth_for(delivery_redis, isolated_settings)
    one, two = GenesysClient(auth_one), GenesysClient(auth_two)
    try:
        await one.send_inbound_message(genesys_tenant_a, message_body(genesys_tenant_a.id, "wamid.1"))
        await two.send_inbound_message(genesys_tenant_a, message_body(genesys_tenant_a.id, "wamid.2"))
        genesys_sim.revoke_tokens(GENESYS_CLIENT_A)
        await one.send_inbound_message(genesys_tenant_a, message_body(genesys_tenant_a.id, "wamid.3"))
        # Worker two still holds the revoked token: its 401 finds worker one's new token in Redis.
        await two.send_inbound_message(genesys_tenant_a, message_body(genesys_tenant_a.id, "wamid.4"))
    finally:
        for closable in (one, two, auth_one, auth_two):
            await closable.close()
    assert logins(genesys_sim, GENESYS_CLIENT_A) == 2
    assert len(genesys_sim.accepted(GENESYS_INTEGRATION_A, "message")) == 4


async def test_a_second_401_after_a_refresh_is_permanent(
    genesys_sim: GenesysSimulator, genesys_client: GenesysClient
) -> None:
    # Login at one Genesys, API at another: every token is unknown where it is used.
    async with GenesysSimulator(genesys_sim_config()).serve() as other_region:
        tenant = genesys_tenant(
            "acme",
            client_id=GENESYS_CLIENT_A,
            client_secret=GENESYS_SECRET_A,
            integration_id=GENESYS_INTEGRATION_A,
            api_url=genesys_sim.url,
            login_url=other_region.url,
        )
        with pytest.raises(TenantHeld) as refused:
            await genesys_client.send_inbound_message(tenant, message_body(tenant.id, "wamid.1"))
        assert refused.value.reason == "genesys_unauthorized"
        assert logins(other_region, GENESYS_CLIENT_A) == 2
    assert len(inbound_requests(genesys_sim, GENESYS_INTEGRATION_A)) == 2


async def test_a_429_throttles_only_its_tenant_until_retry_after(
    genesys_sim: GenesysSimulator,
    genesys_client: GenesysClient,
    genesys_auth: GenesysAuth,
    genesys_tenant_a: Tenant,
    genesys_tenant_b: Tenant,
) -> None:
    await genesys_auth.token(genesys_tenant_b)  # B's token is warm: its send is one request
    genesys_sim.set_faults("integration", GENESYS_INTEGRATION_A, FaultPlan(throttle_rate=1.0, throttle_retry_after_s=3))

    with pytest.raises(TransientError) as throttled:
        await genesys_client.send_inbound_message(genesys_tenant_a, message_body(genesys_tenant_a.id, "wamid.a1"))
    throttled_at = time.monotonic()
    assert throttled.value.retry_after == 3
    genesys_sim.set_faults("integration", GENESYS_INTEGRATION_A, None)

    async def timed(send: Any) -> float:
        await send
        return time.monotonic() - throttled_at

    a_elapsed, b_elapsed = await asyncio.gather(
        timed(genesys_client.send_inbound_message(genesys_tenant_a, message_body(genesys_tenant_a.id, "wamid.a2"))),
        timed(genesys_client.send_inbound_message(genesys_tenant_b, message_body(genesys_tenant_b.id, "wamid.b1"))),
    )

    assert b_elapsed < 2.0, "tenant B waited for tenant A's Retry-After"
    assert a_elapsed >= 2.0, "tenant A's next request did not wait for its Retry-After"
    # A sent nothing while throttled: one 429 and then the request after the wait.
    assert [r.status for r in inbound_requests(genesys_sim, GENESYS_INTEGRATION_A)] == [429, 200]
    [b_request] = inbound_requests(genesys_sim, GENESYS_INTEGRATION_B)
    assert b_request.sequence < inbound_requests(genesys_sim, GENESYS_INTEGRATION_A)[1].sequence
    assert genesys_client.throttled_for(genesys_tenant_b.id) == 0


async def test_server_errors_are_transient(
    genesys_sim: GenesysSimulator, genesys_client: GenesysClient, genesys_tenant_a: Tenant
) -> None:
    genesys_sim.set_faults("integration", GENESYS_INTEGRATION_A, FaultPlan(error_rate=1.0, error_status=503))
    with pytest.raises(TransientError):
        await genesys_client.send_inbound_message(genesys_tenant_a, message_body(genesys_tenant_a.id, "wamid.1"))
    assert genesys_client.throttled_for(genesys_tenant_a.id) == 0
    assert genesys_sim.accepted() == []


async def test_timeouts_and_unreachable_hosts_are_transient(
    genesys_sim: GenesysSimulator, genesys_auth: GenesysAuth, genesys_tenant_a: Tenant
) -> None:
    genesys_sim.set_faults("integration", GENESYS_INTEGRATION_A, FaultPlan(timeout_rate=1.0, timeout_hold_s=10))
    impatient = GenesysClient(genesys_auth, timeout_s=0.3)
    try:
        with pytest.raises(TransientError):
            await impatient.send_inbound_message(genesys_tenant_a, message_body(genesys_tenant_a.id, "wamid.1"))
        unreachable = genesys_tenant_a.model_copy(
            update={
                "config": genesys_tenant_a.config.model_copy(
                    update={"genesys_api_url": f"http://127.0.0.1:{free_port()}"}
                )
            }
        )
        with pytest.raises(TransientError):
            await impatient.send_inbound_message(unreachable, message_body(unreachable.id, "wamid.2"))
    finally:
        await impatient.close()


async def test_a_body_genesys_rejects_is_permanent_with_its_reason(
    genesys_sim: GenesysSimulator, genesys_client: GenesysClient, genesys_tenant_a: Tenant
) -> None:
    body = message_body(genesys_tenant_a.id, "wamid.1")
    # The known peer bug: a MIME string as mediaType.
    body["content"] = [{"attachment": {"mediaType": "image/jpeg", "url": "https://x.test/a.jpg", "mime": "image/jpeg"}}]

    with pytest.raises(PermanentError) as rejected:
        await genesys_client.send_inbound_message(genesys_tenant_a, body)

    assert rejected.value.reason == "genesys_400_bad.request"
    assert "mediaType" in str(rejected.value) and "wamid.1" in str(rejected.value)
    assert genesys_sim.accepted() == []


async def test_an_unknown_integration_is_permanent(
    genesys_sim: GenesysSimulator, genesys_client: GenesysClient, genesys_tenant_a: Tenant
) -> None:
    tenant = genesys_tenant_a.model_copy(
        update={"config": genesys_tenant_a.config.model_copy(update={"genesys_integration_id": "no-such-integration"})}
    )
    with pytest.raises(PermanentError) as rejected:
        await genesys_client.send_inbound_message(tenant, message_body(tenant.id, "wamid.1"))
    assert rejected.value.reason == "genesys_404_not.found"


async def test_requests_in_flight_are_bounded_per_tenant(
    genesys_sim: GenesysSimulator, genesys_auth: GenesysAuth, genesys_tenant_a: Tenant, genesys_tenant_b: Tenant
) -> None:
    await genesys_auth.token(genesys_tenant_a)
    await genesys_auth.token(genesys_tenant_b)
    genesys_sim.set_faults("integration", GENESYS_INTEGRATION_A, FaultPlan(latency=Latency(kind="fixed", ms=1000)))
    narrow = GenesysClient(genesys_auth, max_in_flight_per_tenant=2)
    try:
        sends = [
            asyncio.create_task(
                narrow.send_inbound_message(genesys_tenant_a, message_body(genesys_tenant_a.id, f"wamid.{i}"))
            )
            for i in range(4)
        ]
        await eventually(lambda: len(inbound_requests(genesys_sim, GENESYS_INTEGRATION_A)) == 2)
        # Tenant A's two slots are taken; tenant B is not held up by them.
        await narrow.send_inbound_message(genesys_tenant_b, message_body(genesys_tenant_b.id, "wamid.b"))
        assert len(inbound_requests(genesys_sim, GENESYS_INTEGRATION_A)) == 2
        await asyncio.gather(*sends)
    finally:
        await narrow.close()
    assert len(genesys_sim.accepted(GENESYS_INTEGRATION_A, "message")) == 4


def test_backoff_delays_double_to_the_cap_with_jitter() -> None:
    delays = backoff_delays(0.2, 10.0, jitter=0.5, rng=random.Random(1))
    taken = [next(delays) for _ in range(10)]
    ceilings = [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0, 10.0]
    assert all(c / 2 <= d <= c for d, c in zip(taken, ceilings, strict=True))
    assert len(set(taken)) == len(taken)


# --- GET /auth/token ----------------------------------------------------------------------------


@pytest.fixture
async def genesys_auth_api_url(
    isolated_settings: Settings, genesys_sim: GenesysSimulator, delivery_redis: aioredis.Redis
) -> AsyncIterator[str]:
    """A worker's Faust web app with only the auth view, over a tenant directory in this test's schema."""
    settings = isolated_settings
    async with AsyncExitStack() as cleanup:
        cleanup.push_async_callback(postgres.drop_schema, settings)
        await postgres.migrate(settings)
        pool = await postgres.connect(settings, min_size=1, max_size=2)
        cleanup.push_async_callback(pool.close)
        box = SecretBox.from_settings(settings)
        store = TenantStore(pool, box)
        common = {"api_url": genesys_sim.url, "integration_id": GENESYS_INTEGRATION_A, "client_id": GENESYS_CLIENT_A}
        await store.upsert(genesys_tenant("acme", client_secret=GENESYS_SECRET_A, **common))
        await store.upsert(genesys_tenant("wrongsecret", client_secret="nope", **common))
        directory = TenantDirectory(store, delivery_redis, box, settings)

        async def tenant_directory() -> TenantDirectory:
            return directory

        app = create_app(settings)
        auth = auth_for(delivery_redis, settings)
        cleanup.push_async_callback(auth.close)
        register_auth_api(app, auth, tenant_directory)
        yield await cleanup.enter_async_context(serve_app(app.web.web_app, "127.0.0.1", 0))


async def test_auth_token_view(
    genesys_auth_api_url: str,
    genesys_sim: GenesysSimulator,
    delivery_redis: aioredis.Redis,
    isolated_settings: Settings,
) -> None:
    async with aiohttp.ClientSession(headers=internal_auth.authorization(isolated_settings)) as http:

        async def get(headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
            async with http.get(f"{genesys_auth_api_url}/auth/token", headers=headers) as response:
                return response.status, await response.json()

        status, body = await get({})
        assert status == 400 and "X-Tenant-ID" in body["error"]
        status, body = await get({"X-Tenant-ID": "nobody"})
        assert status == 404 and "error" in body
        status, body = await get({"X-Tenant-ID": "wrongsecret"})
        assert (status, body["reason"]) == (502, "genesys_auth_failed")
        assert "nope" not in body["error"]

        status, body = await get({"X-Tenant-ID": "acme"})
        assert status == 200
        assert body["token_type"] == "Bearer"
        assert 86_400 - 60 < body["expires_in"] <= 86_400
        assert (await get({"X-Tenant-ID": "acme"}))[1]["access_token"] == body["access_token"]

        # One login, the token the stage agents find in Redis, and one Genesys accepts.
        assert logins(genesys_sim, GENESYS_CLIENT_A) == 1
        raw = await delivery_redis.get(isolated_settings.redis_key("tenant:acme:oauth:token"))
        assert cached_token(raw, isolated_settings) == body["access_token"]
        url = f"{genesys_sim.url}/api/v2/conversations/messages/{GENESYS_INTEGRATION_A}/inbound/open/message"
        headers = {"Authorization": f"Bearer {body['access_token']}"}
        async with http.post(url, json=message_body("acme", "wamid.via-auth-api"), headers=headers) as response:
            assert response.status == 200
