"""The tenants a benchmark sends to: existing ones read from PostgreSQL, or extra bench tenants.

Tenant 0 of ``--tenants N`` is the demo tenant; tenants 1..N-1 are ``bench-2`` .. ``bench-N``,
development tenants made like the demo one (``wabridge.dev.demo``) with their own phone number,
app secret, Genesys client and integration. Creating them is idempotent: the tenant is upserted
in PostgreSQL (and the edges' cached copy cleared) and both simulators are told about it through
their admin APIs (``PUT /__sim/phone-numbers/…``, ``/__sim/clients/…``, ``/__sim/integrations/…``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from pydantic import SecretStr

from wabridge.connectors import postgres
from wabridge.connectors.tenant_directory import invalidate_cached
from wabridge.dev.demo import DEMO_TENANT, DemoTenant
from wabridge.settings import Settings
from wabridge.simulators.customer import MediaRef
from wabridge.simulators.media_samples import sample_for
from wabridge.tenants import SecretBox, Tenant, TenantNotFound, TenantStore

BENCH_TENANT_PREFIX = "bench-"


class BenchSetupError(RuntimeError):
    """The stack is not in a state the benchmark can run against (said in plain words)."""


@dataclass(frozen=True)
class BenchTenant:
    """What the generator needs to post as Meta does for one tenant."""

    tenant_id: str
    phone_number_id: str
    display_phone_number: str
    waba_id: str
    app_secret: SecretStr
    integration_id: str
    media: tuple[MediaRef, ...] = ()
    # Signs the agent messages ``--mode outbound`` posts as Genesys's outbound webhook.
    genesys_webhook_secret: SecretStr | None = None

    @classmethod
    def of(cls, tenant: Tenant, waba_id: str | None = None) -> BenchTenant:
        if not tenant.phone_numbers:
            raise BenchSetupError(f"tenant {tenant.id} has no phone number to receive webhooks on")
        number = tenant.phone_numbers[0]
        return cls(
            tenant_id=tenant.id,
            phone_number_id=number.phone_number_id,
            display_phone_number=number.display_phone_number,
            # The WABA id is not kept with the tenant; the bridge records it but does not route on it.
            waba_id=waba_id or number.phone_number_id,
            app_secret=tenant.secrets.meta_app_secret,
            integration_id=tenant.config.genesys_integration_id,
            genesys_webhook_secret=tenant.secrets.genesys_webhook_secret,
        )


def bench_tenant_values(number: int) -> DemoTenant:
    """Tenant ``bench-{number}`` (number >= 2): the demo tenant's shape with its own ids and secrets."""
    return dataclasses.replace(
        DEMO_TENANT,
        tenant_id=f"{BENCH_TENANT_PREFIX}{number}",
        name=f"Benchmark tenant {number} (development)",
        phone_number_id=f"1999000000{number:05d}",
        display_phone_number=f"1555999{number:04d}",
        waba_id=f"2999000000{number:05d}",
        app_secret=f"bench-{number}-app-secret-not-for-production",
        verify_token=f"bench-{number}-verify-token",
        whatsapp_token=f"bench-{number}-whatsapp-token-not-for-production",
        genesys_integration_id=f"00000000-0000-4000-9000-{number:012d}",
        genesys_client_id=f"bench-{number}-genesys-client",
        genesys_client_secret=f"bench-{number}-genesys-secret-not-for-production",
        genesys_webhook_secret=f"bench-{number}-genesys-webhook-secret-not-for-production",
    )


async def load_tenants(settings: Settings, tenant_ids: Sequence[str]) -> list[BenchTenant]:
    """Existing tenants by id, in the order given."""
    pool = await postgres.connect(settings, min_size=1, max_size=1)
    try:
        store = TenantStore(pool, SecretBox.from_settings(settings))
        loaded = []
        for tenant_id in tenant_ids:
            try:
                tenant = await store.get(tenant_id)
            except TenantNotFound as exc:
                raise BenchSetupError(f"{exc} (is `wabridge run` using this database schema?)") from exc
            waba = DEMO_TENANT.waba_id if tenant_id == DEMO_TENANT.tenant_id else None
            loaded.append(BenchTenant.of(tenant, waba))
        return loaded
    finally:
        await pool.close()


async def provision_bench_tenants(settings: Settings, session: aiohttp.ClientSession, count: int) -> list[BenchTenant]:
    """The demo tenant and ``count - 1`` bench tenants, known to PostgreSQL and both simulators."""
    extra = [bench_tenant_values(number) for number in range(2, count + 1)]
    if extra:
        pool = await postgres.connect(settings, min_size=1, max_size=1)
        try:
            store = TenantStore(pool, SecretBox.from_settings(settings))
            for values in extra:
                tenant = values.tenant(settings)
                await store.upsert(tenant)
                await invalidate_cached(settings, tenant)
        finally:
            await pool.close()
        for values in extra:
            await _configure_simulators(settings, session, values)
    tenants = await load_tenants(settings, [DEMO_TENANT.tenant_id])
    return tenants + [BenchTenant.of(values.tenant(settings), values.waba_id) for values in extra]


async def _configure_simulators(settings: Settings, session: aiohttp.ClientSession, values: DemoTenant) -> None:
    configs = values.simulator_configs(settings)
    meta_url = f"http://{settings.sim_meta_host}:{settings.sim_meta_port}"
    genesys_url = f"http://{settings.sim_genesys_host}:{settings.sim_genesys_port}"
    for number in configs["sim_meta"]["phone_numbers"]:
        await _put(session, f"{meta_url}/__sim/phone-numbers/{number['phone_number_id']}", number)
    for client in configs["sim_genesys"]["clients"]:
        await _put(session, f"{genesys_url}/__sim/clients/{client['client_id']}", client)
    for integration in configs["sim_genesys"]["integrations"]:
        await _put(session, f"{genesys_url}/__sim/integrations/{integration['integration_id']}", integration)


async def _put(session: aiohttp.ClientSession, url: str, body: dict[str, object]) -> None:
    async with session.put(url, json=body) as response:
        if response.status >= 300:
            raise BenchSetupError(f"PUT {url} answered {response.status}: {await response.text()}")


async def with_media(session: aiohttp.ClientSession, meta_url: str, tenant: BenchTenant, count: int) -> BenchTenant:
    """The tenant with ``count`` images its customers have sent, stored at the Meta simulator."""
    sample = sample_for("image")
    media = []
    for index in range(count):
        url = f"{meta_url}/__sim/media"
        params = {"phone_number_id": tenant.phone_number_id, "mime_type": sample.mime_type}
        async with session.post(url, params=params, data=sample.data) as response:
            if response.status != 200:
                raise BenchSetupError(
                    f"the Meta simulator did not store media for {tenant.phone_number_id} "
                    f"({response.status}: {await response.text()}); media messages need the number configured there"
                )
            stored = await response.json()
        media.append(MediaRef(stored["id"], stored["mime_type"], stored["sha256"], f"bench-{index}.jpg"))
    return dataclasses.replace(tenant, media=tuple(media))
