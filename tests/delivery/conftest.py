"""Fixtures for the delivery tests: the Genesys simulator with two tenants' orgs, this test's Redis
keys, and the real Genesys client over them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from wabridge.connectors import redis_client
from wabridge.connectors.genesys import GenesysAuth, GenesysClient
from wabridge.settings import Settings
from wabridge.simulators import GenesysClient as SimulatedOAuthClient
from wabridge.simulators import GenesysIntegration, GenesysSimConfig, GenesysSimulator
from wabridge.tenants import SecretBox, Tenant, TenantConfig, TenantSecrets

GENESYS_CLIENT_A = "client-a"
GENESYS_SECRET_A = "client-secret-a"
GENESYS_INTEGRATION_A = "5e5a1c43-0000-4000-8000-00000000000a"
GENESYS_CLIENT_B = "client-b"
GENESYS_SECRET_B = "client-secret-b"
GENESYS_INTEGRATION_B = "5e5a1c43-0000-4000-8000-00000000000b"


def genesys_tenant(
    tenant_id: str,
    *,
    client_id: str,
    client_secret: str,
    integration_id: str,
    api_url: str,
    login_url: str | None = None,
) -> Tenant:
    """A tenant whose Genesys org is served at ``api_url`` (login at ``login_url``, default the same)."""
    return Tenant(
        id=tenant_id,
        name=f"{tenant_id} test business",
        config=TenantConfig(
            genesys_client_id=client_id,
            genesys_integration_id=integration_id,
            genesys_api_url=api_url,
            genesys_login_url=login_url or api_url,
        ),
        secrets=TenantSecrets(
            meta_app_secret=SecretStr(f"{tenant_id}-app-secret"),
            meta_verify_token=SecretStr(f"{tenant_id}-verify-token"),
            meta_access_token=SecretStr(f"{tenant_id}-meta-token"),
            genesys_client_secret=SecretStr(client_secret),
            genesys_webhook_secret=SecretStr(f"{tenant_id}-webhook-secret"),
        ),
    )


def genesys_sim_config() -> GenesysSimConfig:
    """Two orgs, one OAuth client and one integration each; no rate limit unless a test sets one."""
    return GenesysSimConfig(
        clients=[
            SimulatedOAuthClient(
                client_id=GENESYS_CLIENT_A, client_secret=SecretStr(GENESYS_SECRET_A), organization_id="org-a"
            ),
            SimulatedOAuthClient(
                client_id=GENESYS_CLIENT_B, client_secret=SecretStr(GENESYS_SECRET_B), organization_id="org-b"
            ),
        ],
        integrations=[
            GenesysIntegration(integration_id=GENESYS_INTEGRATION_A, organization_id="org-a"),
            GenesysIntegration(integration_id=GENESYS_INTEGRATION_B, organization_id="org-b"),
        ],
        rate_limit_per_minute=0,
    )


@pytest.fixture
async def genesys_sim() -> AsyncIterator[GenesysSimulator]:
    async with GenesysSimulator(genesys_sim_config(), seed=11).serve() as simulator:
        yield simulator


@pytest.fixture
def genesys_tenant_a(genesys_sim: GenesysSimulator) -> Tenant:
    return genesys_tenant(
        "acme",
        client_id=GENESYS_CLIENT_A,
        client_secret=GENESYS_SECRET_A,
        integration_id=GENESYS_INTEGRATION_A,
        api_url=genesys_sim.url,
    )


@pytest.fixture
def genesys_tenant_b(genesys_sim: GenesysSimulator) -> Tenant:
    return genesys_tenant(
        "globex",
        client_id=GENESYS_CLIENT_B,
        client_secret=GENESYS_SECRET_B,
        integration_id=GENESYS_INTEGRATION_B,
        api_url=genesys_sim.url,
    )


@pytest.fixture
async def delivery_redis(isolated_settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """A Redis client; this test's keys (under its prefix) are removed afterwards."""
    client = redis_client.client(isolated_settings)
    try:
        yield client
    finally:
        keys = [key async for key in client.scan_iter(match=isolated_settings.redis_key("*"))]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def genesys_auth(delivery_redis: aioredis.Redis, isolated_settings: Settings) -> AsyncIterator[GenesysAuth]:
    auth = GenesysAuth(
        delivery_redis, SecretBox.from_settings(isolated_settings), isolated_settings, login_timeout_s=5.0
    )
    try:
        yield auth
    finally:
        await auth.close()


@pytest.fixture
async def genesys_client(genesys_auth: GenesysAuth) -> AsyncIterator[GenesysClient]:
    client = GenesysClient(genesys_auth, timeout_s=5.0)
    try:
        yield client
    finally:
        await client.close()
