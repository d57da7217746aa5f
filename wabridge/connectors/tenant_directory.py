"""Who owns a phone number or an integration: an in-process cache over Redis over PostgreSQL.

The edge looks a tenant up on every webhook, so the hot path is a dictionary lookup. Entries
live ``local_ttl_s`` in-process (a disabled tenant is refused within that time on every edge
process) and an hour in Redis (``tenant:{id}:config``, as the seed says, with the secrets still
encrypted). Redis is a cache: when it is down, lookups go to PostgreSQL.

The lookup runs before a webhook's signature can be checked (the number says whose secret signs
it), so what an anonymous sender can make it do is bounded (issue 16): the directory holds the set
of every number some tenant owns, read in one query when a lookup needs it and it is over a second
old. A number nobody owns is answered with no Redis or PostgreSQL round trip of
its own and nothing remembered (one list query a second per process at most, whatever the rate of
made-up numbers); only owned numbers are cached, so the caches cannot grow past the tenants' own
numbers. A number added to a tenant is routed within a second; one removed stops routing within
``local_ttl_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge
from pydantic import SecretStr, ValidationError
from redis.exceptions import RedisError

from wabridge.connectors import redis_client
from wabridge.errors import ConfigurationError, TransientError
from wabridge.failures import classify
from wabridge.observability import ThrottledLog
from wabridge.settings import Settings
from wabridge.tenants import SecretBox, Tenant, TenantConfig, TenantNotFound, TenantStore
from wabridge.tenants.models import SECRET_FIELDS

log = logging.getLogger(__name__)
STALE_LIST = ThrottledLog(log)
UNREADABLE_LOG = ThrottledLog(log, logging.ERROR, period_s=60.0)
UNREADABLE = Gauge("wabridge_tenants_unreadable", "Tenants whose credentials no configured key decrypts")

CONFIG_TTL_S = 3600
# The owned-number list is read again when a lookup needs it and it is older than this: a number
# just added to a tenant routes within a second; made-up numbers cause at most a query a second.
LIST_MAX_AGE_S = 1.0

LOOKUPS = Counter(
    "wabridge_tenant_lookups_total",
    "Phone-number lookups by where they were answered (process, redis, postgres, unknown) and number-list reads",
    ["source"],
)


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
        # Owned numbers only: bounded by the tenants' numbers, whatever senders make up.
        self._by_phone: dict[str, tuple[float, Tenant]] = {}
        self._by_id: dict[str, tuple[float, Tenant | None]] = {}
        self._all: tuple[float, list[Tenant]] | None = None
        self._unreadable: dict[str, TenantConfig] = {}
        self._numbers: tuple[float, frozenset[str]] | None = None  # (read at, numbers)
        self._numbers_lock = asyncio.Lock()

    async def by_phone_number_id(self, phone_number_id: str) -> Tenant | None:
        if not plausible_id(phone_number_id):
            # No tenant has it, and PostgreSQL refuses a NUL in text: never a lookup, never a 5xx.
            LOOKUPS.labels("unknown").inc()
            return None
        now = time.monotonic()
        cached = self._by_phone.get(phone_number_id)
        if cached is not None and cached[0] > now:
            LOOKUPS.labels("process").inc()
            return cached[1]
        if phone_number_id not in await self._owned_numbers():
            LOOKUPS.labels("unknown").inc()
            return None
        tenant = await self._from_redis(phone_number_id)
        if tenant is not None:
            LOOKUPS.labels("redis").inc()
        else:
            LOOKUPS.labels("postgres").inc()
            tenant = await self._store.find_by_phone_number_id(phone_number_id)
            if tenant is None:
                return None  # removed since the number list was read
            await self._to_redis(phone_number_id, tenant)
        self._by_phone[phone_number_id] = (now + self._local_ttl_s, tenant)
        return tenant

    def cached_numbers(self) -> frozenset[str]:
        """The phone numbers this process holds a tenant for (only owned ones, ever)."""
        return frozenset(self._by_phone)

    async def _owned_numbers(self) -> frozenset[str]:
        """The numbers some tenant owns, read at most ``LIST_MAX_AGE_S`` ago (one query at a time)."""
        numbers = self._numbers
        if numbers is not None and time.monotonic() - numbers[0] < LIST_MAX_AGE_S:
            return numbers[1]
        async with self._numbers_lock:
            numbers = self._numbers
            if numbers is not None and time.monotonic() - numbers[0] < LIST_MAX_AGE_S:
                return numbers[1]
            LOOKUPS.labels("number_list").inc()
            read_at = time.monotonic()
            try:
                owned = await self._store.phone_number_ids()
            except Exception as exc:
                if numbers is None or not isinstance(classify(exc), TransientError):
                    raise
                # PostgreSQL is down: the last list still tells made-up numbers apart from owned
                # ones (whose tenant then needs PostgreSQL or Redis: 503, retried by Meta).
                STALE_LIST.log("owned phone numbers not re-read, using an older list: %s", exc)
                self._numbers = (read_at, numbers[1])
                return numbers[1]
            self._numbers = (read_at, owned)
            for number in [n for n in self._by_phone if n not in owned]:
                del self._by_phone[number]
            return owned

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
        """Every tenant whose credentials can be read (verify handshakes and unparseable bodies are
        matched against each). A tenant whose credentials no key of the ring decrypts is left out,
        said and counted: it alone is refused (``by_integration_id``), every other tenant goes on."""
        now = time.monotonic()
        if self._all is not None and self._all[0] > now:
            return self._all[1]
        tenants, unreadable = await self._store.list_readable()
        for tenant_id in unreadable:
            UNREADABLE_LOG.log("tenant %s: its credentials cannot be decrypted with any configured key", tenant_id)
        UNREADABLE.set(len(unreadable))
        self._all = (now + self._local_ttl_s, tenants)
        self._unreadable = unreadable
        return tenants

    async def by_integration_id(self, integration_id: str) -> Tenant | None:
        for tenant in await self.all_tenants():
            if tenant.config.genesys_integration_id == integration_id:
                return tenant
        for tenant_id, config in self._unreadable.items():
            if config.genesys_integration_id == integration_id:
                # Genesys retries a 5xx: the agent's message waits for the operator's fix, not lost.
                raise TransientError(f"tenant {tenant_id}: its credentials cannot be decrypted")
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
