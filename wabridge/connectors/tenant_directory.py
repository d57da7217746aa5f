"""Who owns a phone number or an integration: an in-process cache over Redis over PostgreSQL.

The edge looks a tenant up on every webhook, so the hot path is a dictionary lookup. Entries
live ``local_ttl_s`` in-process (a disabled tenant is refused within that time on every edge
process) and an hour in Redis (``tenant:{id}:config``, as the seed says, with the secrets still
encrypted). Redis is a cache: when it is down, lookups go to PostgreSQL.
"""

from __future__ import annotations

import logging
import time

import orjson
import redis.asyncio as aioredis
from pydantic import SecretStr, ValidationError
from redis.exceptions import RedisError

from wabridge.connectors import redis_client
from wabridge.errors import ConfigurationError
from wabridge.settings import Settings
from wabridge.tenants import SecretBox, Tenant, TenantNotFound, TenantStore
from wabridge.tenants.models import SECRET_FIELDS

log = logging.getLogger(__name__)

CONFIG_TTL_S = 3600


class TenantDirectory:
    def __init__(
        self,
        store: TenantStore,
        redis: aioredis.Redis,
        box: SecretBox,
        settings: Settings,
        local_ttl_s: float = 10.0,
    ) -> None:
        self._store = store
        self._redis = redis
        self._box = box
        self._settings = settings
        self._local_ttl_s = local_ttl_s
        self._by_phone: dict[str, tuple[float, Tenant | None]] = {}
        self._by_id: dict[str, tuple[float, Tenant | None]] = {}
        self._all: tuple[float, list[Tenant]] | None = None

    async def by_phone_number_id(self, phone_number_id: str) -> Tenant | None:
        if not plausible_id(phone_number_id):
            # No tenant has it, and PostgreSQL refuses a NUL in text: never a lookup, never a 5xx.
            return None
        now = time.monotonic()
        cached = self._by_phone.get(phone_number_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        tenant = await self._from_redis(phone_number_id)
        if tenant is None:
            tenant = await self._store.find_by_phone_number_id(phone_number_id)
            if tenant is not None:
                await self._to_redis(phone_number_id, tenant)
        self._by_phone[phone_number_id] = (now + self._local_ttl_s, tenant)
        return tenant

    async def by_id(self, tenant_id: str) -> Tenant | None:
        """The tenant with this id (the stage agents look it up per event), or None if unknown."""
        now = time.monotonic()
        cached = self._by_id.get(tenant_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            tenant: Tenant | None = await self._store.get(tenant_id)
        except TenantNotFound:
            tenant = None
        self._by_id[tenant_id] = (now + self._local_ttl_s, tenant)
        return tenant

    async def all_tenants(self) -> list[Tenant]:
        """Every tenant (verify handshakes and unparseable bodies are matched against each)."""
        now = time.monotonic()
        if self._all is not None and self._all[0] > now:
            return self._all[1]
        tenants = await self._store.list()
        self._all = (now + self._local_ttl_s, tenants)
        return tenants

    async def by_integration_id(self, integration_id: str) -> Tenant | None:
        for tenant in await self.all_tenants():
            if tenant.config.genesys_integration_id == integration_id:
                return tenant
        return None

    def _phone_key(self, phone_number_id: str) -> str:
        return self._settings.redis_key(f"tenant:phone:{phone_number_id}")

    def _config_key(self, tenant_id: str) -> str:
        return self._settings.redis_key(f"tenant:{tenant_id}:config")

    async def _from_redis(self, phone_number_id: str) -> Tenant | None:
        try:
            found = await self._redis.get(self._phone_key(phone_number_id))
            if found is None:
                return None
            tenant_id = redis_client.text(found)
            document = await self._redis.get(self._config_key(tenant_id))
        except RedisError as exc:
            log.warning("redis unavailable for tenant lookup, using PostgreSQL: %s", exc)
            return None
        if document is None:
            return None
        try:
            data = orjson.loads(document)
            secrets = {name: SecretStr(self._box.decrypt(data["secrets"][name])) for name in SECRET_FIELDS}
            return Tenant.model_validate({**data, "secrets": secrets})
        except (ConfigurationError, orjson.JSONDecodeError, ValidationError, KeyError, TypeError) as exc:
            # Written with another secrets key (or by another version): PostgreSQL is the truth, and
            # the entry is written again from it. Never a reason to refuse the tenant's webhooks.
            log.warning("cached config of tenant %s unreadable, reading PostgreSQL: %s", tenant_id, exc)
            return None

    async def _to_redis(self, phone_number_id: str, tenant: Tenant) -> None:
        document = tenant.model_dump(mode="json", exclude={"secrets"})
        document["secrets"] = {
            name: self._box.encrypt(getattr(tenant.secrets, name).get_secret_value()) for name in SECRET_FIELDS
        }
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(self._config_key(tenant.id), orjson.dumps(document), ex=CONFIG_TTL_S)
                pipe.set(self._phone_key(phone_number_id), tenant.id, ex=CONFIG_TTL_S)
                await pipe.execute()
        except RedisError as exc:
            log.warning("redis unavailable, tenant %s not cached: %s", tenant.id, exc)


# Meta's phone number ids are digits; tenants' ids are short. Anything else names no tenant.
_MAX_ID_CHARS = 128


def plausible_id(value: str) -> bool:
    """Whether ``value`` could be a stored id: 1-128 printable characters (no NUL or controls)."""
    return 0 < len(value) <= _MAX_ID_CHARS and value.isprintable()


def cached_keys(settings: Settings, tenant: Tenant) -> list[str]:
    """Every Redis key that caches something of ``tenant``: its configuration (credentials
    encrypted), its phone numbers' owner entries, its WhatsApp and Genesys access tokens."""
    keys = [settings.redis_key(f"tenant:{tenant.id}:{name}") for name in ("config", "whatsapp:token", "oauth:token")]
    return keys + [settings.redis_key(f"tenant:phone:{p.phone_number_id}") for p in tenant.phone_numbers]


async def invalidate_cached(settings: Settings, *versions: Tenant) -> None:
    """Forget a tenant's cached entries after a change, so edges see it within ``local_ttl_s``.

    Given the tenant before and after, a phone number it no longer has stops routing to it too.
    """
    if not versions:
        return
    tenant = versions[-1]
    redis = redis_client.client(settings)
    keys = sorted({key for version in versions for key in cached_keys(settings, version)})
    try:
        await redis.delete(*keys)
    except RedisError as exc:
        log.warning("tenant %s changed but its cache could not be cleared (expires within an hour): %s", tenant.id, exc)
    finally:
        await redis.aclose()
