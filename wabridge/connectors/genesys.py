"""The Genesys Cloud edge: per-tenant OAuth tokens and the Open Messaging inbound API.

``GenesysAuth`` is the seed's Auth Service. One client-credentials token per tenant, cached in Redis
under ``tenant:{id}:oauth:token`` (TTL ``expires_in - 300`` s), encrypted like every credential
(``SecretBox``), and for a short while in-process.
Refreshes are single-flight twice over: the tasks of one process share one refresh, and across
worker processes a Redis lock (``tenant:{id}:oauth:lock``) lets one holder call the login host
while the others poll the token key. ``invalidate`` drops a token only if it is still the cached
one, so fifty concurrent 401s cause one refresh. Redis is a cache: when it is down, each process
logs in on its own.

``GenesysClient`` is the seed's Genesys API Service. It POSTs to
``/api/v2/conversations/messages/{integrationId}/inbound/open/…`` with the tenant's token, and
decides once what each answer means (STYLE.md §5):

* 2xx: a ``DeliveryResult`` with Genesys's message id (and conversation id for messages);
* 401: refresh the token once and retry once; a second 401 is ``TenantHeld("genesys_unauthorized")``:
  the tenant's messages wait for an operator (so does a login Genesys refuses, ``genesys_auth_failed``);
* 429: ``TransientError(retry_after=Retry-After)``, and the tenant's later requests in this
  process wait until then (other tenants go on);
* 408, 5xx, timeouts, connection errors: ``TransientError`` (retry with ``backoff_delays``);
* other 4xx: ``PermanentError`` with reason ``genesys_{status}_{code}`` and Genesys's message.

A timeout after sending means the outcome is unknown: Genesys may hold the message. Retrying can
post it twice; not retrying can lose it. Losing is worse, so it is a ``TransientError``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import redis.asyncio as aioredis
from prometheus_client import Counter, Histogram
from redis.exceptions import RedisError

from wabridge.errors import ConfigurationError, PermanentError, TenantHeld, TransientError, retry_after_seconds
from wabridge.settings import Settings
from wabridge.tenants import SecretBox, Tenant

log = logging.getLogger(__name__)

REQUESTS = Counter(
    "wabridge_genesys_requests_total",
    "Requests to the Genesys inbound API, by tenant, endpoint and outcome",
    ["tenant", "endpoint", "outcome"],
)
LATENCY = Histogram(
    "wabridge_genesys_request_seconds",
    "Time from sending a request to the Genesys inbound API to its answer",
    ["endpoint"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TOKEN_REFRESHES = Counter(
    "wabridge_genesys_token_refreshes_total",
    "Logins at the Genesys login host (client credentials), by tenant and outcome",
    ["tenant", "outcome"],
)
THROTTLED_WAITS = Counter(
    "wabridge_genesys_throttled_waits_total",
    "Requests held back until a tenant's Retry-After moment had passed",
    ["tenant"],
)

# The seed's margin: a cached token has at least this long to live when it is handed out.
TOKEN_REFRESH_MARGIN_S = 300
INBOUND_PATH = "/api/v2/conversations/messages/{integration_id}/inbound/open/{endpoint}"
# When a 429 names no wait (Genesys always does; a proxy might not).
DEFAULT_RETRY_AFTER_S = 1.0
_LOCK_POLL_S = 0.05
_RETRY_IN_BODY = re.compile(r"\[(\d+(?:\.\d+)?)\]\s*seconds")
_UNSAFE_IN_REASON = re.compile(r"[^a-z0-9._-]+")

# Compare-and-delete: a token is dropped only while it is the one cached (values are ours: JSON).
_INVALIDATE_IF_CURRENT = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local ok, doc = pcall(cjson.decode, current)
if not ok or type(doc) ~= 'table' or doc['fingerprint'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _fingerprint(token: str) -> str:
    """SHA-256 of a token: lets Redis compare a refused token with the cached one without holding it
    in clear (the cached token itself is encrypted)."""
    return hashlib.sha256(token.encode()).hexdigest()


def genesys_session(max_connections: int = 256) -> aiohttp.ClientSession:
    """One connection pool for every tenant's Genesys calls (timeouts are set per request).

    No per-host limit: tenants of one region share a host, and per-tenant fairness is the
    client's in-flight bound, not the pool's.
    """
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=max_connections, ttl_dns_cache=300))


def backoff_delays(
    start_s: float = 0.2, cap_s: float = 10.0, *, jitter: float = 0.5, rng: random.Random | None = None
) -> Iterator[float]:
    """Endless retry delays: doubling from ``start_s`` to ``cap_s``, each cut by up to ``jitter``.

    The jitter spreads lanes that failed together (one outage) so they do not retry in step. Take
    ``max(next(delays), error.retry_after or 0)``: a peer's Retry-After is never shortened.
    """
    draw = rng or random.Random()
    delay = start_s
    while True:
        yield delay * (1 - jitter * draw.random())
        delay = min(delay * 2, cap_s)


def cache_ttl_ms(expires_in_s: float) -> int:
    """How long a token stays cached: ``expires_in - 300`` s, or half its life if that is longer."""
    lifetime_ms = expires_in_s * 1000
    return max(1, int(max(lifetime_ms - TOKEN_REFRESH_MARGIN_S * 1000, lifetime_ms / 2)))


@dataclass(frozen=True, slots=True)
class AccessToken:
    value: str = field(repr=False)
    # Wall-clock second when Genesys stops accepting it.
    expires_at: float

    def expires_in(self) -> float:
        return max(0.0, self.expires_at - time.time())


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What Genesys answered to an accepted request."""

    # Genesys's message id (for a receipt: the agent message it is about). None only if a 2xx
    # came without one: the request was accepted all the same, so it must not be retried.
    genesys_message_id: str | None
    # With ``prefetchConversationId=true`` (inbound messages).
    conversation_id: str | None = None


@dataclass(slots=True)
class _LocalToken:
    token: AccessToken
    valid_until: float  # monotonic


class GenesysAuth:
    """Per-tenant client-credentials tokens: Redis-cached, refreshed by one task in one process."""

    def __init__(
        self,
        redis: aioredis.Redis,
        box: SecretBox,
        settings: Settings,
        *,
        http: aiohttp.ClientSession | None = None,
        login_timeout_s: float = 10.0,
        local_ttl_s: float = 30.0,
    ) -> None:
        self._redis = redis
        self._box = box
        self._settings = settings
        self._http = http
        self._owns_http = http is None
        self._login_timeout = aiohttp.ClientTimeout(total=login_timeout_s, connect=min(5.0, login_timeout_s))
        self._local_ttl_s = local_ttl_s
        # The lock outlives the holder's login, so a crashed holder frees it soon after;
        # waiters poll past that and then log in themselves.
        self._lock_ttl_ms = int((login_timeout_s + 5.0) * 1000)
        self._peer_wait_s = 2 * self._lock_ttl_ms / 1000
        self._local: dict[str, _LocalToken] = {}
        self._refreshing: dict[str, asyncio.Task[AccessToken]] = {}
        self._invalidate_script = redis.register_script(_INVALIDATE_IF_CURRENT)
        self._release_script = redis.register_script(_RELEASE_LOCK)

    async def token(self, tenant: Tenant) -> str:
        """A bearer token for ``tenant`` that is not about to expire (cached, else refreshed)."""
        return (await self.access_token(tenant)).value

    async def access_token(self, tenant: Tenant) -> AccessToken:
        """Like ``token``, with its expiry (the ``/auth/token`` view reports it)."""
        local = self._local.get(tenant.id)
        if local is not None and local.valid_until > time.monotonic():
            return local.token
        task = self._refreshing.get(tenant.id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._obtain(tenant))
            self._refreshing[tenant.id] = task
            task.add_done_callback(lambda done: self._refresh_done(tenant.id, done))
        # Shielded: a caller that is cancelled does not cancel the refresh the others wait for.
        return await asyncio.shield(task)

    async def invalidate(self, tenant: Tenant, token: str) -> None:
        """Genesys refused ``token``: forget it, unless it was already replaced."""
        local = self._local.get(tenant.id)
        if local is not None and local.token.value == token:
            del self._local[tenant.id]
        try:
            await self._invalidate_script(keys=[self._token_key(tenant.id)], args=[_fingerprint(token)])
        except RedisError as exc:
            log.warning("redis unavailable, tenant %s token not invalidated there: %s", tenant.id, exc)

    async def replace(self, tenant: Tenant, stale: str) -> str:
        """A token other than ``stale`` (which Genesys refused): invalidate it and get the next one."""
        token = stale
        # Twice: a refresh already under way may have read ``stale`` back just before it was dropped.
        for _ in range(2):
            await self.invalidate(tenant, stale)
            token = await self.token(tenant)
            if token != stale:
                break
        return token

    async def close(self) -> None:
        for task in list(self._refreshing.values()):
            task.cancel()
        if self._owns_http and self._http is not None:
            await self._http.close()

    # --- cache and lock -------------------------------------------------------------------------

    def _token_key(self, tenant_id: str) -> str:
        return self._settings.redis_key(f"tenant:{tenant_id}:oauth:token")

    def _lock_key(self, tenant_id: str) -> str:
        return self._settings.redis_key(f"tenant:{tenant_id}:oauth:lock")

    def _refresh_done(self, tenant_id: str, task: asyncio.Task[AccessToken]) -> None:
        if self._refreshing.get(tenant_id) is task:
            del self._refreshing[tenant_id]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter got it already

    def _remember(self, tenant_id: str, token: AccessToken, cached_for_ms: int, *, only_here: bool = False) -> None:
        # Briefly when Redis has it too (so workers converge on one token); for its whole cache
        # life when Redis could not take it, so a Redis outage does not mean a login every few seconds.
        valid_for = cached_for_ms / 1000 if only_here else min(self._local_ttl_s, cached_for_ms / 1000)
        self._local[tenant_id] = _LocalToken(token, time.monotonic() + valid_for)

    async def _obtain(self, tenant: Tenant) -> AccessToken:
        cached = await self._cached(tenant.id)
        if cached is not None:
            return cached
        deadline = time.monotonic() + self._peer_wait_s
        while True:
            lock = await self._acquire_lock(tenant.id)
            if lock is not None:
                try:
                    # Another worker may have written a token between our miss and the lock.
                    cached = await self._cached(tenant.id)
                    if cached is not None:
                        return cached
                    return await self._refresh(tenant)
                finally:
                    await self._release_lock(tenant.id, lock)
            # Another worker is refreshing: wait for its token instead of calling the login host.
            await asyncio.sleep(_LOCK_POLL_S)
            cached = await self._cached(tenant.id)
            if cached is not None:
                return cached
            if time.monotonic() > deadline:
                raise TransientError(
                    f"tenant {tenant.id}: another worker's token refresh did not finish in time", retry_after=1.0
                )

    async def _cached(self, tenant_id: str) -> AccessToken | None:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(self._token_key(tenant_id))
                pipe.pttl(self._token_key(tenant_id))
                document, ttl_ms = await pipe.execute()
        except RedisError as exc:
            log.warning("redis unavailable, tenant %s token not read from cache: %s", tenant_id, exc)
            return None
        if document is None or ttl_ms <= 0:
            return None
        try:
            data = orjson.loads(document)
            value = self._box.decrypt(str(data["token"]))
            token = AccessToken(value=value, expires_at=float(data["expiresAt"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, ConfigurationError):
            # Another format, or a key no longer in the ring: log in again rather than fail.
            log.warning("tenant %s: unreadable cached token ignored", tenant_id)
            return None
        self._remember(tenant_id, token, ttl_ms)
        return token

    async def _acquire_lock(self, tenant_id: str) -> str | None:
        """The lock's value if this process may refresh now, else None (another worker is at it)."""
        value = uuid.uuid4().hex
        try:
            acquired = await self._redis.set(self._lock_key(tenant_id), value, nx=True, px=self._lock_ttl_ms)
        except RedisError as exc:
            # No coordination without Redis: refresh alone rather than not at all.
            log.warning("redis unavailable, tenant %s token refreshed without the lock: %s", tenant_id, exc)
            return value
        return value if acquired else None

    async def _release_lock(self, tenant_id: str, value: str) -> None:
        try:
            await self._release_script(keys=[self._lock_key(tenant_id)], args=[value])
        except RedisError as exc:
            log.warning("redis unavailable, tenant %s token lock left to expire: %s", tenant_id, exc)

    async def _refresh(self, tenant: Tenant) -> AccessToken:
        token, expires_in = await self._login(tenant)
        ttl_ms = cache_ttl_ms(expires_in)
        document = orjson.dumps(
            {
                "token": self._box.encrypt(token.value),
                "fingerprint": _fingerprint(token.value),
                "expiresAt": token.expires_at,
            }
        )
        try:
            await self._redis.set(self._token_key(tenant.id), document, px=ttl_ms)
        except RedisError as exc:
            log.warning("redis unavailable, tenant %s token cached in this process only: %s", tenant.id, exc)
            self._remember(tenant.id, token, ttl_ms, only_here=True)
        else:
            self._remember(tenant.id, token, ttl_ms)
        return token

    # --- login ----------------------------------------------------------------------------------

    async def _login(self, tenant: Tenant) -> tuple[AccessToken, float]:
        config = tenant.config
        if not config.genesys_client_id:
            raise TenantHeld(
                f"tenant {tenant.id} has no Genesys OAuth client", tenant_id=tenant.id, reason="genesys_not_configured"
            )
        if self._http is None:
            self._http = genesys_session()
        secret = tenant.secrets.genesys_client_secret.get_secret_value()
        credentials = base64.b64encode(f"{config.genesys_client_id}:{secret}".encode()).decode("ascii")
        url = f"{config.genesys_login_base.rstrip('/')}/oauth/token"
        try:
            async with self._http.post(
                url,
                data={"grant_type": "client_credentials"},
                headers={"Authorization": f"Basic {credentials}", "Accept": "application/json"},
                timeout=self._login_timeout,
                allow_redirects=False,
            ) as response:
                status, headers, raw = response.status, response.headers, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            TOKEN_REFRESHES.labels(tenant.id, "unreachable").inc()
            raise TransientError(f"tenant {tenant.id}: Genesys login failed: {_describe(exc)}") from exc
        if status == 200:
            try:
                data = orjson.loads(raw)
                access_token = data["access_token"]
                expires_in = float(data.get("expires_in") or TOKEN_REFRESH_MARGIN_S)
                if not isinstance(access_token, str) or not access_token:
                    raise ValueError("empty access_token")
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
                TOKEN_REFRESHES.labels(tenant.id, "error").inc()
                raise TransientError(f"tenant {tenant.id}: unreadable Genesys token response ({exc})") from exc
            TOKEN_REFRESHES.labels(tenant.id, "ok").inc()
            log.info("tenant %s: Genesys token refreshed (expires in %d s)", tenant.id, expires_in)
            return AccessToken(access_token, time.time() + expires_in), expires_in
        if status == 429 or status == 408 or status >= 500:
            TOKEN_REFRESHES.labels(tenant.id, "error").inc()
            raise TransientError(
                f"tenant {tenant.id}: Genesys login answered {status}", retry_after=_retry_after(headers, raw)
            )
        TOKEN_REFRESHES.labels(tenant.id, "rejected").inc()
        raise TenantHeld(
            f"tenant {tenant.id}: Genesys login refused client {config.genesys_client_id}: "
            f"{status} {_login_error(raw)}; fix the tenant's OAuth client (wabridge tenants update)",
            tenant_id=tenant.id,
            reason="genesys_auth_failed",
        )


class GenesysClient:
    """The Open Messaging inbound API for every tenant, over one connection pool."""

    def __init__(
        self,
        auth: GenesysAuth,
        *,
        http: aiohttp.ClientSession | None = None,
        max_in_flight_per_tenant: int = 64,
        timeout_s: float = 15.0,
    ) -> None:
        self._auth = auth
        self._http = http
        self._owns_http = http is None
        self._max_in_flight = max_in_flight_per_tenant
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(5.0, timeout_s))
        self._in_flight: dict[str, asyncio.Semaphore] = {}
        # Per tenant: the monotonic moment its last 429 said to wait until.
        self._throttled_until: dict[str, float] = {}

    async def send_inbound_message(self, tenant: Tenant, body: Mapping[str, Any]) -> DeliveryResult:
        """POST an ``OpenInboundNormalizedMessage``; the result has the message and conversation ids."""
        return await self._post(tenant, "message", body, {"prefetchConversationId": "true"})

    async def send_receipt(self, tenant: Tenant, body: Mapping[str, Any]) -> DeliveryResult:
        """POST an ``OpenInboundNormalizedReceipt`` for an agent's message."""
        return await self._post(tenant, "receipt", body)

    async def send_event(self, tenant: Tenant, body: Mapping[str, Any]) -> DeliveryResult:
        """POST an inbound event (the customer is typing)."""
        return await self._post(tenant, "event", body)

    async def send_structured_response(self, tenant: Tenant, body: Mapping[str, Any]) -> DeliveryResult:
        """POST a button or quick-reply answer to an agent's structured message."""
        return await self._post(tenant, "structured/response", body)

    def throttled_for(self, tenant_id: str) -> float:
        """Seconds this tenant's requests still wait for its last Retry-After (0 when not throttled)."""
        return max(0.0, self._throttled_until.get(tenant_id, 0.0) - time.monotonic())

    async def close(self) -> None:
        if self._owns_http and self._http is not None:
            await self._http.close()

    async def _post(
        self, tenant: Tenant, endpoint: str, body: Mapping[str, Any], query: Mapping[str, str] | None = None
    ) -> DeliveryResult:
        integration_id = tenant.config.genesys_integration_id
        if not integration_id:
            raise TenantHeld(
                f"tenant {tenant.id} has no Open Messaging integration",
                tenant_id=tenant.id,
                reason="genesys_not_configured",
            )
        path = INBOUND_PATH.format(integration_id=quote(integration_id, safe=""), endpoint=endpoint)
        url = f"{tenant.config.genesys_api_base.rstrip('/')}{path}"
        call = _Call(tenant.id, endpoint, url, dict(query or {}), orjson.dumps(body), _message_id(body))
        async with self._slot(tenant.id):
            await self._wait_until_unthrottled(call)
            token = await self._auth.token(tenant)
            status, headers, raw = await self._request(call, token)
            if status == 401:
                REQUESTS.labels(tenant.id, endpoint, "unauthorized").inc()
                log.info("tenant %s message %s: Genesys refused the token, refreshing once", call.tenant_id, call.mid)
                token = await self._auth.replace(tenant, token)
                status, headers, raw = await self._request(call, token)
                if status == 401:
                    REQUESTS.labels(tenant.id, endpoint, "unauthorized").inc()
                    raise TenantHeld(
                        f"tenant {tenant.id}: Genesys refused a freshly issued token ({_genesys_error(raw)}); "
                        "check the OAuth client's roles and the integration",
                        tenant_id=tenant.id,
                        reason="genesys_unauthorized",
                    )
        return self._outcome(call, status, headers, raw)

    @asynccontextmanager
    async def _slot(self, tenant_id: str) -> AsyncIterator[None]:
        semaphore = self._in_flight.get(tenant_id)
        if semaphore is None:
            semaphore = self._in_flight[tenant_id] = asyncio.Semaphore(self._max_in_flight)
        async with semaphore:
            yield

    async def _wait_until_unthrottled(self, call: _Call) -> None:
        # Re-checked after each sleep: a 429 that arrived meanwhile may have moved the moment on.
        waited = False
        while (wait := self.throttled_for(call.tenant_id)) > 0:
            if not waited:
                THROTTLED_WAITS.labels(call.tenant_id).inc()
                log.debug("tenant %s message %s: waiting %.2f s (Retry-After)", call.tenant_id, call.mid, wait)
                waited = True
            await asyncio.sleep(wait)

    async def _request(self, call: _Call, token: str) -> tuple[int, Mapping[str, str], bytes]:
        if self._http is None:
            self._http = genesys_session()
        started = time.perf_counter()
        try:
            async with self._http.post(
                call.url,
                params=call.query,
                data=call.payload,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                },
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                status, headers, raw = response.status, response.headers, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcome = "timeout" if isinstance(exc, TimeoutError) else "unreachable"
            REQUESTS.labels(call.tenant_id, call.endpoint, outcome).inc()
            log.warning("tenant %s message %s: Genesys %s: %s", call.tenant_id, call.mid, outcome, _describe(exc))
            raise TransientError(
                f"tenant {call.tenant_id}: Genesys {call.endpoint} {outcome}: {_describe(exc)}",
                # Not connected at all: Genesys never saw it. Anything later: it may have.
                maybe_taken=not isinstance(exc, aiohttp.ClientConnectorError),
            ) from exc
        finally:
            LATENCY.labels(call.endpoint).observe(time.perf_counter() - started)
        return status, headers, raw

    def _outcome(self, call: _Call, status: int, headers: Mapping[str, str], raw: bytes) -> DeliveryResult:
        tenant_id = call.tenant_id
        if 200 <= status < 300:
            REQUESTS.labels(tenant_id, call.endpoint, "ok").inc()
            return _delivery_result(call, raw)
        if status == 429:
            REQUESTS.labels(tenant_id, call.endpoint, "throttled").inc()
            retry_after = _retry_after(headers, raw)
            if retry_after is None:
                retry_after = DEFAULT_RETRY_AFTER_S
            until = time.monotonic() + retry_after
            self._throttled_until[tenant_id] = max(until, self._throttled_until.get(tenant_id, 0.0))
            log.warning("tenant %s message %s: Genesys throttled, retry after %.1f s", tenant_id, call.mid, retry_after)
            raise TransientError(f"tenant {tenant_id}: Genesys rate limit", retry_after=retry_after)
        if status == 408 or status >= 500:
            REQUESTS.labels(tenant_id, call.endpoint, "server_error").inc()
            log.warning("tenant %s message %s: Genesys %d %s", tenant_id, call.mid, status, _genesys_error(raw))
            raise TransientError(
                f"tenant {tenant_id}: Genesys {call.endpoint} answered {status}",
                retry_after=_retry_after(headers, raw),
                maybe_taken=True,
            )
        REQUESTS.labels(tenant_id, call.endpoint, "rejected").inc()
        code = _error_code(raw)
        log.warning("tenant %s message %s: Genesys refused: %d %s", tenant_id, call.mid, status, _genesys_error(raw))
        raise PermanentError(
            f"tenant {tenant_id}: Genesys refused {call.endpoint} {call.mid}: {status} {_genesys_error(raw)}",
            reason=f"genesys_{status}_{code}",
        )


@dataclass(frozen=True, slots=True)
class _Call:
    tenant_id: str
    endpoint: str
    url: str
    query: dict[str, str]
    payload: bytes
    mid: str | None  # channel.messageId (the wamid), or a receipt's id: for the logs


def _message_id(body: Mapping[str, Any]) -> str | None:
    channel = body.get("channel")
    if isinstance(channel, Mapping) and isinstance(channel.get("messageId"), str):
        return str(channel["messageId"])
    return body.get("id") if isinstance(body.get("id"), str) else None


def _delivery_result(call: _Call, raw: bytes) -> DeliveryResult:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        log.warning("tenant %s message %s: Genesys accepted it without an id", call.tenant_id, call.mid)
        return DeliveryResult(genesys_message_id=None)
    conversation_id = data.get("conversationId")
    result = DeliveryResult(data["id"], conversation_id if isinstance(conversation_id, str) else None)
    log.debug(
        "tenant %s message %s: Genesys accepted %s as %s",
        call.tenant_id,
        call.mid,
        call.endpoint,
        result.genesys_message_id,
    )
    return result


def _retry_after(headers: Mapping[str, str], raw: bytes) -> float | None:
    """Seconds from ``Retry-After`` (seconds or an HTTP date), else from Genesys's ``[42] seconds`` text."""
    from_header = retry_after_seconds(headers.get("Retry-After"))
    if from_header is not None:
        return from_header
    found = _RETRY_IN_BODY.search(str(_error_document(raw).get("message", "")))
    return float(found.group(1)) if found else None


def _error_document(raw: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _error_code(raw: bytes) -> str:
    """Genesys's error code, made safe for a reason (and so a metric label)."""
    code = str(_error_document(raw).get("code") or "error").lower()
    return _UNSAFE_IN_REASON.sub("_", code)[:64] or "error"


def _genesys_error(raw: bytes) -> str:
    """``code: message`` of a Genesys error body, with the per-field problems and contextId."""
    data = _error_document(raw)
    if not data:
        return raw[:200].decode("utf-8", errors="replace")
    text = f"{data.get('code', '')}: {data.get('message', '')}"
    problems = [e.get("message") for e in data.get("errors") or [] if isinstance(e, dict) and e.get("message")]
    if problems:
        text += f" ({'; '.join(str(p) for p in problems[:5])})"
    if data.get("contextId"):
        text += f" [contextId {data['contextId']}]"
    return text


def _login_error(raw: bytes) -> str:
    data = _error_document(raw)
    return f"{data.get('error', '')}: {data.get('error_description') or data.get('description') or ''}".strip()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
