"""Rotating the secrets key: a keyring (new key encrypts, old keys decrypt) and ``tenants rotate-key``.

Attacks and mistakes: a key no longer in the ring, a key that never was one, a key in an error
message. And the procedure an operator follows, under live traffic, with nothing lost.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import defaultdict

import orjson
import pytest
from pydantic import SecretStr

from tests.integration.edge_fixtures import make_tenant, save_tenants, settings_env
from tests.pipeline.conftest import ACME, Pipeline, pg_rows, stack_ready, wait_for
from wabridge.connectors import postgres, redis_client
from wabridge.connectors.tenant_directory import cached_keys
from wabridge.errors import ConfigurationError
from wabridge.settings import Settings
from wabridge.simulators.customer import InboundSpec
from wabridge.tenants import SecretBox, TenantStore
from wabridge.tenants.crypto import generate_key


def keyring(*keys: str) -> SecretStr:
    return SecretStr(",".join(keys))


def rotate(settings: Settings) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wabridge", "tenants", "rotate-key"],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def stored_credentials(settings: Settings) -> dict[str, dict[str, str]]:
    rows = await pg_rows(settings, "SELECT tenant_id, credentials FROM tenant_credentials")
    return {r["tenant_id"]: orjson.loads(r["credentials"]) for r in rows}


def test_a_keyring_encrypts_with_its_first_key_and_decrypts_with_any() -> None:
    old, new = generate_key(), generate_key()
    made_with_old = SecretBox(keyring(old)).encrypt("client-secret")
    ring = SecretBox(keyring(new, old))
    assert ring.decrypt(made_with_old) == "client-secret"
    assert not ring.is_current(made_with_old)
    rotated = ring.rotate(made_with_old)
    assert ring.is_current(rotated) and SecretBox(keyring(new)).decrypt(rotated) == "client-secret"
    with pytest.raises(ConfigurationError, match="cannot be decrypted"):
        SecretBox(keyring(new)).decrypt(made_with_old)
    # A broken key is named by its place in the ring, never shown.
    with pytest.raises(ConfigurationError, match="key 2 of 2") as refused:
        SecretBox(keyring(new, "not-a-key-at-all"))
    assert "not-a-key-at-all" not in str(refused.value)


async def test_rotate_key_re_encrypts_every_secret_and_drops_encrypted_caches(
    provisioned: Settings, stack_settings: Settings
) -> None:
    old, new = generate_key(), generate_key()
    settings = provisioned.model_copy(update={"secrets_key": keyring(old)})
    tenants = [make_tenant("acme"), make_tenant("globex", phone_number_id="206540352242999")]
    await save_tenants(settings, *tenants)
    redis = redis_client.client(settings)
    try:
        # Encrypted copies in Redis, as the edge and the workers leave them.
        box_old = SecretBox(keyring(old))
        for tenant in tenants:
            for key in cached_keys(settings, tenant):
                await redis.set(key, box_old.encrypt("cached"), ex=600)

        # A ring without the key the secrets were made with cannot rotate them, and changes nothing.
        failed = rotate(settings.model_copy(update={"secrets_key": keyring(new)}))
        assert failed.returncode != 0 and "cannot be decrypted" in failed.stderr
        assert old not in failed.stderr + failed.stdout and new not in failed.stderr + failed.stdout
        before = await stored_credentials(settings)
        assert all(box_old.is_current(v) for creds in before.values() for v in creds.values())

        done = rotate(settings.model_copy(update={"secrets_key": keyring(new, old)}))
        assert done.returncode == 0, done.stderr
        assert "2 tenants re-encrypted, 0 already under the current key" in done.stdout
        # The old key can go: every tenant reads with the new key alone, and no cache is left over.
        only_new = settings.model_copy(update={"secrets_key": keyring(new)})
        pool = await postgres.connect(only_new, min_size=1, max_size=1)
        try:
            store = TenantStore(pool, SecretBox.from_settings(only_new))
            assert [t.secrets for t in await store.list()] == [t.secrets for t in tenants]
        finally:
            await pool.close()
        for tenant in tenants:
            assert await redis.exists(*cached_keys(settings, tenant)) == 0
        again = rotate(only_new)
        assert "0 tenants re-encrypted, 2 already under the current key" in again.stdout
    finally:
        await redis.aclose()


async def test_rotation_under_live_traffic_loses_nothing(pipeline: Pipeline) -> None:
    """The README's procedure: new key first (rolling restart), rotate-key, old key out (restart)."""
    settings = pipeline.settings
    old = settings.secrets_key.get_secret_value() if settings.secrets_key else ""
    new = generate_key()
    customers = [f"165055577{i:02d}" for i in range(6)]
    wamids: list[str] = []

    async def send(tag: str) -> None:
        specs = [InboundSpec(kind="text", wa_id=c, text=f"{tag} {c} #{n}") for n in range(3) for c in customers]
        wamids.extend(await pipeline.send(ACME, specs, batch=True))

    async def restart_all_with(ring: str) -> None:
        for process in pipeline.processes.values():  # one at a time, as a rolling deploy does
            process.stop()
            process.env = {**process.env, "WABRIDGE_SECRETS_KEY": ring}
            process.start()
            await wait_for(lambda: stack_ready(pipeline.http, settings), 90, f"{process.name} back", pipeline)

    await send("before")
    await restart_all_with(f"{new},{old}")  # messages of "before" still in flight
    await send("ring")
    rotated = await asyncio.to_thread(rotate, settings.model_copy(update={"secrets_key": keyring(new, old)}))
    assert rotated.returncode == 0, rotated.stderr
    await send("rotated")
    await restart_all_with(new)
    await send("after")  # the edge checks signatures and the worker logs in to Genesys with the new key alone

    await pipeline.wait_arrived(ACME, wamids, timeout_s=120)
    arrived = pipeline.arrived_ids(ACME)
    assert sorted(arrived) == sorted(wamids)  # each exactly once
    seen: dict[str, list[str]] = defaultdict(list)
    for accepted in pipeline.arrived(ACME):
        seen[accepted.body["channel"]["from"]["id"]].append(accepted.body["text"])
    for customer in customers:
        expected = [f"{tag} {customer} #{n}" for tag in ("before", "ring", "rotated", "after") for n in range(3)]
        assert seen[customer] == expected
    stored = await stored_credentials(settings)
    box_new = SecretBox(keyring(new))
    assert all(box_new.is_current(v) for creds in stored.values() for v in creds.values())
    logs = "\n".join(p.tail(2000) for p in pipeline.processes.values())
    assert "cannot be decrypted" not in logs and "unreadable cached" not in logs
    assert await pg_rows(settings, "SELECT 1 FROM message_tracking WHERE status = 'failed'") == []
