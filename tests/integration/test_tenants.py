"""Onboarding a business with `wabridge tenants`, secrets encrypted at rest and never printed in full."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import orjson
import pytest
from pydantic import SecretStr

from tests.integration.edge_fixtures import make_tenant, save_tenants
from wabridge.connectors import postgres, redis_client
from wabridge.connectors.tenant_directory import TenantDirectory
from wabridge.settings import Settings
from wabridge.tenants import SecretBox, TenantStore
from wabridge.tenants.crypto import generate_key

APP_SECRET = "fake-app-secret-0123456789abcdef"


@pytest.fixture
async def tenant_env(isolated_settings: Settings, tmp_path: Path):
    await postgres.migrate(isolated_settings)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WABRIDGE_")},
        "WABRIDGE_POSTGRES_SCHEMA": isolated_settings.postgres_schema,
        "WABRIDGE_SECRETS_KEY": generate_key(),
    }
    try:
        yield env, tmp_path
    finally:
        await postgres.drop_schema(isolated_settings)


def _tenants(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wabridge", "tenants", *args], env=env, cwd=cwd, capture_output=True, text=True
    )


ADD = [
    "add", "--id", "acme", "--name", "Acme Retail", "--phone-number", "106540352242922=15550783881@102290129340398",
    "--genesys-region", "mypurecloud.ie", "--genesys-client-id", "client-1",
    "--genesys-integration-id", "5e5a1c43-0000-4000-8000-000000000abc",
    "--meta-app-secret", APP_SECRET, "--meta-verify-token", "fake-verify-token",
    "--meta-access-token", "fake-access-token-EAAG0000000000", "--genesys-client-secret", "fake-client-secret-xyz",
    "--genesys-webhook-secret", "fake-webhook-secret-xyz",
]  # fmt: skip


async def test_add_show_update_disable_a_tenant(tenant_env, isolated_settings: Settings) -> None:
    env, cwd = tenant_env
    added = _tenants(ADD, env, cwd)
    assert added.returncode == 0, added.stderr

    listed = _tenants(["list"], env, cwd)
    assert listed.stdout.split("\t")[:2] == ["acme", "active"]
    as_json = orjson.loads(_tenants(["list", "--json"], env, cwd).stdout)
    assert [(t["id"], t["active"]) for t in as_json] == [("acme", True)]
    assert APP_SECRET not in str(as_json)
    # Adding it again is refused (a typo must not replace a live tenant); --update replaces it.
    again = _tenants(ADD, env, cwd)
    assert again.returncode != 0 and "tenants update" in again.stderr
    assert _tenants([*ADD, "--update"], env, cwd).returncode == 0

    shown = _tenants(["show", "acme"], env, cwd)
    assert APP_SECRET not in shown.stdout and "fake-client-secret-xyz" not in shown.stdout
    described = orjson.loads(shown.stdout)
    assert described["phone_numbers"] == [
        {"phone_number_id": "106540352242922", "display_phone_number": "15550783881", "waba_id": "102290129340398"}
    ]
    assert described["config"]["genesys_region"] == "mypurecloud.ie"

    # At rest: nothing in PostgreSQL carries the secret in clear text.
    conn = await asyncpg.connect(isolated_settings.postgres_dsn.get_secret_value())
    try:
        raw = await conn.fetchval(
            f'SELECT credentials::text FROM "{isolated_settings.postgres_schema}".tenant_credentials'
        )
    finally:
        await conn.close()
    assert APP_SECRET not in raw and "fake-webhook-secret-xyz" not in raw

    updated = _tenants(
        ["update", "acme", "--add-phone-number", "106540352242923=15550783882", "--meta-app-secret", "fake-rotated"],
        env,
        cwd,
    )
    assert updated.returncode == 0, updated.stderr
    assert _tenants(["disable", "acme"], env, cwd).returncode == 0

    pool = await postgres.connect(isolated_settings, min_size=1, max_size=1)
    try:
        store = TenantStore(pool, SecretBox(SecretStr(env["WABRIDGE_SECRETS_KEY"])))
        tenant = await store.find_by_phone_number_id("106540352242923")
        assert tenant is not None and tenant.id == "acme"
        assert not tenant.active
        assert tenant.secrets.meta_app_secret.get_secret_value() == "fake-rotated"
        assert tenant.config.genesys_login_base == "https://login.mypurecloud.ie"
        assert await store.find_by_phone_number_id("999") is None
    finally:
        await pool.close()


def test_a_phone_number_belongs_to_one_tenant(tenant_env) -> None:
    env, cwd = tenant_env
    assert _tenants(ADD, env, cwd).returncode == 0
    other = [*ADD]
    other[other.index("acme")] = "other"
    clash = _tenants(other, env, cwd)
    assert clash.returncode != 0
    assert "already belong to another tenant: 106540352242922 (tenant acme)" in clash.stderr


def test_missing_secrets_key_is_a_clear_error(tenant_env) -> None:
    env, cwd = tenant_env
    env = {k: v for k, v in env.items() if k != "WABRIDGE_SECRETS_KEY"}
    result = _tenants(ADD, env, cwd)
    assert result.returncode != 0
    assert "WABRIDGE_SECRETS_KEY is not set" in result.stderr


async def test_disabling_clears_the_cached_tenant(tenant_env, isolated_settings: Settings) -> None:
    """An edge reads tenants from Redis for up to an hour: a change must not wait for that."""

    env, cwd = tenant_env
    env = {**env, "WABRIDGE_REDIS_KEY_PREFIX": isolated_settings.redis_key_prefix}
    assert _tenants(ADD, env, cwd).returncode == 0
    client = redis_client.client(isolated_settings)
    try:
        cached = [isolated_settings.redis_key(k) for k in ("tenant:acme:config", "tenant:phone:106540352242922")]
        for key in cached:
            await client.set(key, b"stale", ex=3600)
        assert _tenants(["disable", "acme"], env, cwd).returncode == 0
        assert await client.exists(*cached) == 0
    finally:
        await client.aclose()


async def test_a_cached_tenant_another_key_wrote_is_read_again_from_postgresql(provisioned: Settings) -> None:
    """A worker with a new secrets key (or a stale cache after a rotation) must not refuse the
    tenant's webhooks because Redis holds what the old key encrypted."""
    settings = provisioned.model_copy(update={"secrets_key": SecretStr(generate_key())})
    tenant = make_tenant("acme", "106540352242922")
    await save_tenants(settings, tenant)
    pool = await postgres.connect(settings, min_size=1, max_size=2)
    client = redis_client.client(settings)
    try:
        box = SecretBox.from_settings(settings)
        other_box = SecretBox.from_settings(settings.model_copy(update={"secrets_key": SecretStr(generate_key())}))
        # Another process, with another key, cached the tenant first.
        other = TenantDirectory(TenantStore(pool, other_box), client, other_box, settings)
        await other._to_redis("106540352242922", tenant)
        found = await TenantDirectory(TenantStore(pool, box), client, box, settings).by_phone_number_id(
            "106540352242922"
        )
        assert found is not None and found.secrets.meta_app_secret == tenant.secrets.meta_app_secret
        # ...and the entry is now the one this key can read.
        again = await TenantDirectory(TenantStore(pool, box), client, box, settings)._from_redis("106540352242922")
        assert again is not None and again.id == "acme"
    finally:
        await client.aclose()
        await pool.close()
