"""``wabridge webhook``: the edge that Meta and Genesys POST to.

Meta is told 200 only once the webhook is durable in RabbitMQ (publisher confirm). The order of
checks on ``POST /webhook/meta`` is the seed's: size cap, signature (over the raw bytes, with the
app secret of the tenant that owns the phone number), tenant active, rate limit, publish and raw
archive to S3 (in batches, ``connectors.archive``; best effort: durability comes from the queue),
200.

Statuses Meta can get: 200 (queued, or quarantined), 401 (missing or wrong signature),
403 (tenant disabled), 404 (no tenant owns the phone_number_id: Meta keeps retrying for 7 days,
so onboarding the number in that time loses nothing), 413 (body over the cap),
429 (tenant over its rate limit), 503 (RabbitMQ did not confirm, PostgreSQL unreachable, or the
edge is saturated: Meta retries; ``Retry-After`` says when).

Overload: :class:`Admission` bounds the webhooks worked on at once. A request takes a slot only
once its body is complete (read under a deadline), so a stranger who stalls mid-body holds no slot;
one that finds no room within ``webhook_admission_wait_s`` is answered 503, and Meta hears "retry"
in a fraction of a second rather than after its own timeout. ``connection_guard`` bounds the
connections a stranger can hold, and the time to send a request head.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.typedefs import Handler
from miniopy_async.api import Minio
from prometheus_client import Counter, Gauge, Histogram
from redis.exceptions import RedisError

from wabridge.connectors import connection_guard, postgres, redis_client, s3
from wabridge.connectors.archive import RawArchive, iso_utc
from wabridge.connectors.connection_guard import ConnectionGuard, GuardedSite
from wabridge.connectors.rabbitmq import DurablePublisher, epoch_header
from wabridge.connectors.tenant_directory import TenantDirectory
from wabridge.errors import PermanentError, TransientError
from wabridge.failures import classify
from wabridge.masking import loggable
from wabridge.observability import ThrottledLog, health_routes
from wabridge.schemas.meta import (
    WebhookBody,
    WebhookShapeError,
    archive_message_id,
    message_ids,
    parse_webhook,
    routing_ids,
    select_changes,
)
from wabridge.settings import Settings
from wabridge.streams.topics import GENESYS_OUTBOUND_EVENTS, INBOUND_WHATSAPP_MESSAGES
from wabridge.tenants import SecretBox, Tenant, TenantStore

log = logging.getLogger(__name__)
# What anonymous senders can cause is logged at most once per kind every 10 s (and always counted).
REFUSALS = ThrottledLog(log)

REQUESTS = Counter(
    "wabridge_webhook_requests_total", "Webhook requests by endpoint and outcome", ["endpoint", "outcome"]
)
LATENCY = Histogram(
    "wabridge_webhook_latency_seconds",
    "Time from request to answer",
    ["endpoint"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
QUEUE_FAILURES = Counter("wabridge_webhook_queue_failures_total", "Webhooks refused because RabbitMQ did not confirm")
IN_FLIGHT = Gauge("wabridge_webhook_in_flight", "Webhooks being worked on (admitted, not yet answered)")
SLOW_BODIES = Counter("wabridge_webhook_slow_bodies_total", "Requests whose body did not arrive within its deadline")
QUEUE_UNAVAILABLE = Gauge("wabridge_webhook_queue_unavailable", "1 while the last publish to RabbitMQ failed (alert)")
QUARANTINED = Counter("wabridge_webhook_quarantined_total", "Validly signed bodies that are not WhatsApp payloads")
SET_ASIDE = Counter(
    "wabridge_webhook_set_aside_total",
    "Parts of webhooks for several tenants kept in the quarantine instead of queued, by reason",
    ["reason"],
)
RATE_LIMITER_UNAVAILABLE = Counter(
    "wabridge_webhook_rate_limiter_unavailable_total", "Webhooks let through unlimited because Redis was down"
)

SIGNATURE_HEADER = "X-Hub-Signature-256"
# Seconds Meta (or Genesys) is asked to wait before retrying a webhook the edge could not take now.
RETRY_AFTER_S = 1
GENESYS_DEDUPE_TTL_S = 24 * 3600
QUARANTINE_PREFIX = "quarantine"


def _utf8(value: str) -> bytes:
    """Bytes for a constant-time comparison: ``hmac.compare_digest`` refuses non-ASCII ``str``,
    and a header is whatever a sender put there."""
    return value.encode("utf-8", errors="surrogateescape")


def meta_signature_valid(secret: str, body: bytes, header: str | None) -> bool:
    """``sha256=<lowercase hex HMAC-SHA256(app_secret, raw body)>``, compared in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(_utf8(expected), _utf8(header[len("sha256=") :].strip().lower()))


def genesys_signature_valid(secret: str, body: bytes, header: str | None) -> bool:
    """Genesys signs ``sha256=<base64 HMAC>``; some implementations send hex. Accept both."""
    if not header or not header.startswith("sha256="):
        return False
    given = _utf8(header[len("sha256=") :].strip())
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return hmac.compare_digest(base64.b64encode(digest), given) or hmac.compare_digest(
        digest.hex().encode(), given.lower()
    )


def archive_key(tenant_id: str, received: datetime, message_id: str) -> str:
    """``{tenantId}/{yyyy-MM-dd}/{timestamp}-{messageId}.json``, as the seed lays it out."""
    return f"{tenant_id}/{received:%Y-%m-%d}/{int(received.timestamp())}-{message_id}.json"


def with_metadata(body: bytes, metadata: dict[str, Any]) -> bytes:
    """The seed's archive document: the payload's own fields plus ``metadata``.

    Spliced into the raw bytes rather than re-serialised, so the original body (and with it the
    signature) stays byte-for-byte recoverable: it is everything before the appended member.
    """
    stripped = body.rstrip()
    if not stripped.endswith(b"}"):
        return body
    return stripped[:-1] + b',"metadata":' + orjson.dumps(metadata) + b"}"


def meta_queue_headers(tenants: dict[str, str], received: datetime, archive_key: str) -> dict[str, str]:
    """The headers of a Meta webhook on the inbound queue, which the bridge reads
    (``connectors.bridge.meta_records``): the owning tenant of each ``phone_number_id``, when the
    edge received it, and where it is archived."""
    return {
        "source": "meta",
        "tenants": orjson.dumps(tenants).decode(),
        "received_at": epoch_header(received.timestamp()),
        "archive_key": archive_key,
    }


def original_body(document: bytes) -> bytes:
    """The body Meta sent, from an archive document (``with_metadata`` undone; trailing whitespace
    of the original aside, byte for byte)."""
    cut = document.rfind(b',"metadata":')
    return document[:cut] + b"}" if cut != -1 and document.endswith(b"}") else document


@dataclass(frozen=True)
class EdgeDeps:
    settings: Settings
    tenants: TenantDirectory
    redis: aioredis.Redis
    s3: Minio
    publisher: DurablePublisher
    pool: Any
    archive: RawArchive


class WebhookEdge:
    def __init__(self, deps: EdgeDeps) -> None:
        self._d = deps
        self._settings = deps.settings

    # --- Meta -------------------------------------------------------------------------------

    async def verify(self, request: web.Request) -> web.Response:
        """Meta's subscription handshake: echo the challenge when the verify token is a tenant's."""
        query = request.query
        token = query.get("hub.verify_token", "")
        if query.get("hub.mode") == "subscribe" and token:
            for tenant in await self._d.tenants.all_tenants():
                if hmac.compare_digest(_utf8(tenant.secrets.meta_verify_token.get_secret_value()), _utf8(token)):
                    log.info("verify handshake accepted for tenant %s", tenant.id)
                    return web.Response(text=query.get("hub.challenge", ""))
        log.warning("verify handshake refused: unknown verify token")
        return web.Response(status=403, text="verify token does not match")

    async def receive_meta(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            response = await self._receive_meta(request)
        finally:
            LATENCY.labels("meta").observe(time.perf_counter() - started)
        return response

    async def _receive_meta(self, request: web.Request) -> web.Response:
        body = await request.read()  # read whole, within its deadline and size cap, by ``Admission``
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            REFUSALS.log("meta webhook without %s refused", SIGNATURE_HEADER)
            return _answer("meta", 401, "unsigned", f"missing {SIGNATURE_HEADER}")

        try:
            parsed = parse_webhook(body)
        except WebhookShapeError as exc:
            return await self._quarantine(request, body, signature, str(exc))
        numbers = routing_ids(parsed)  # phone numbers, and the WABA of a template update
        if not numbers:
            return await self._quarantine(request, body, signature, "no phone_number_id in any change")

        # Before the signature is checked, everything here is bounded: the directory answers a
        # number nobody owns without a round trip (connectors.tenant_directory).
        owners: dict[str, Tenant] = {}
        unknown: set[str] = set()
        for number in sorted(numbers):
            tenant = await self._d.tenants.by_phone_number_id(number)
            if tenant is None:
                unknown.add(number)
            else:
                owners[number] = tenant
        if not owners:
            REFUSALS.log(
                "meta webhook for phone_number_id %s: no tenant owns it (answered 404)", loggable(min(numbers))
            )
            return _answer("meta", 404, "unknown_phone_number", "no tenant owns the phone_number_id")
        tenants = {t.id: t for t in owners.values()}
        signers = {
            tenant_id: tenant
            for tenant_id, tenant in sorted(tenants.items())
            if meta_signature_valid(tenant.secrets.meta_app_secret.get_secret_value(), body, signature)
        }
        if not signers:
            REFUSALS.log("meta webhook for tenant %s: signature does not verify", min(tenants))
            return _answer("meta", 401, "bad_signature", "signature does not verify")
        # Authenticated from here: the POST comes from the Meta app of every tenant in ``signers``.
        accepted = {tenant_id: tenant for tenant_id, tenant in signers.items() if tenant.active}
        if not accepted:
            log.warning("meta webhook for disabled tenant %s refused", min(signers))
            return _answer("meta", 403, "tenant_inactive", f"tenant {min(signers)} is inactive")
        for tenant in accepted.values():
            if await self._over_rate_limit(tenant):
                log.warning("meta webhook for tenant %s over its rate limit", tenant.id)
                return _answer("meta", 429, "rate_limited", f"tenant {tenant.id} is over its rate limit")

        received = datetime.now(UTC)
        if len(tenants) == 1 and not unknown:
            # One tenant's POST (the common case): archived and queued byte for byte.
            (tenant,) = accepted.values()
            outcome = await self._accept(request, tenant, body, parsed, owners, signature, received)
        else:
            outcome = await self._accept_mixed(request, body, owners, unknown, signers, accepted, signature, received)
        if outcome is not None:
            return outcome
        QUEUE_UNAVAILABLE.set(0)
        REQUESTS.labels("meta", "queued").inc()
        return web.Response(text="EVENT_RECEIVED")

    async def _accept_mixed(
        self,
        request: web.Request,
        body: bytes,
        owners: dict[str, Tenant],
        unknown: set[str],
        signers: dict[str, Tenant],
        accepted: dict[str, Tenant],
        signature: str,
        received: datetime,
    ) -> web.Response | None:
        """A POST with several tenants' numbers (one Meta app serving them), or numbers nobody owns.

        Each accepted tenant's changes are archived under its own prefix and queued on their own.
        The rest is set aside in the quarantine for re-ingest, not retried by Meta as a whole:
        numbers nobody owns, numbers of a tenant whose app secret does not verify this POST (never
        trusted: another tenant's app cannot speak for it), numbers of a disabled tenant, and
        changes that name no number. Each set-aside part is kept under the prefix of the tenant it
        belongs to, else of the tenant whose app sent it.
        """
        document = orjson.loads(body)
        signer = next(iter(signers))
        by_tenant: dict[str, set[str]] = {}
        for number, tenant in owners.items():
            by_tenant.setdefault(tenant.id, set()).add(number)
        aside: list[tuple[str, str, set[str] | None]] = []  # (tenant prefix, reason, numbers)
        if unknown:
            aside.append((signer, "unknown_phone_number", unknown))
        for tenant_id, numbers in sorted(by_tenant.items()):
            if tenant_id not in signers:
                aside.append((signer, "signature_mismatch", numbers))
            elif tenant_id not in accepted:
                aside.append((tenant_id, "tenant_inactive", numbers))
        aside.append((signer, "no_phone_number", None))
        for prefix, reason, named in aside:
            part = select_changes(document, named)
            if part is None:
                continue
            problem = f"{reason}: part of a webhook for several tenants ({', '.join(sorted(named or ['-']))})"
            if not await self._store_quarantined(prefix, orjson.dumps(part), problem):
                return _answer("meta", 503, "quarantine_unavailable", "could not store the payload; retry later")
            SET_ASIDE.labels(reason).inc()
        for tenant_id, tenant in accepted.items():
            part = select_changes(document, by_tenant[tenant_id])
            if part is None:
                continue
            raw = orjson.dumps(part)
            numbers_of = {n: t for n, t in owners.items() if t.id == tenant_id}
            outcome = await self._accept(request, tenant, raw, parse_webhook(raw), numbers_of, signature, received)
            if outcome is not None:
                return outcome
        return None

    async def _accept(
        self,
        request: web.Request,
        tenant: Tenant,
        body: bytes,
        parsed: WebhookBody,
        owners: dict[str, Tenant],
        signature: str,
        received: datetime,
    ) -> web.Response | None:
        """Archive and queue one tenant's webhook; None once both are done, else the answer to give."""
        ids = message_ids(parsed)
        key = archive_key(tenant.id, received, archive_message_id(body, parsed))
        metadata = {
            "stored_at": iso_utc(received),
            "tenant_id": tenant.id,
            "webhook_signature": signature,
            "source_ip": request.remote,
            "user_agent": request.headers.get("User-Agent"),
        }
        headers = meta_queue_headers({n: t.id for n, t in owners.items()}, received, key)
        # Archive and publish at the same time: the webhook joins its tenant's next archive batch,
        # which is written once the publishes of its webhooks are settled (connectors.archive).
        ticket = self._d.archive.add(tenant.id, key, received, ids, with_metadata(body, metadata))
        queued = False
        try:
            await self._d.publisher.publish(self._settings.queue(INBOUND_WHATSAPP_MESSAGES), body, headers)
            queued = True
        except TransientError as exc:
            QUEUE_FAILURES.inc()
            QUEUE_UNAVAILABLE.set(1)
            log.error("meta webhook for tenant %s (%s) not queued, answered 503: %s", tenant.id, ids[:3], exc)
            return _answer("meta", 503, "queue_unavailable", "not durably queued; retry later")
        finally:
            # Only a confirmed publish is archived: a refused one (or a cancelled request) is left out.
            if queued:
                ticket.confirm()
            else:
                ticket.withdraw()
        await ticket.wait_stored()
        return None

    async def _over_rate_limit(self, tenant: Tenant) -> bool:
        limit = tenant.config.rate_limit_per_minute or self._settings.webhook_rate_limit_per_minute
        key = self._settings.redis_key(f"ratelimit:{tenant.id}:{int(time.time() // 60)}")
        try:
            async with self._d.redis.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, 60, nx=True)
                count, _ = await pipe.execute()
        except RedisError as exc:
            RATE_LIMITER_UNAVAILABLE.inc()
            log.warning("rate limiter unavailable (redis: %s); tenant %s not limited", exc, tenant.id)
            return False
        return int(count) > limit

    async def _quarantine(self, request: web.Request, body: bytes, signature: str, problem: str) -> web.Response:
        """A body that is not a WhatsApp payload: kept (if some tenant signed it), never retried by Meta."""
        for tenant in await self._d.tenants.all_tenants():
            if meta_signature_valid(tenant.secrets.meta_app_secret.get_secret_value(), body, signature):
                break
        else:
            REFUSALS.log("unparseable meta webhook with no valid signature refused: %s", loggable(problem, 200))
            return _answer("meta", 401, "bad_signature", "signature does not verify")
        if not await self._store_quarantined(tenant.id, body, problem):
            # Nowhere to keep it: let Meta retry rather than lose it.
            return _answer("meta", 503, "quarantine_unavailable", "could not store the payload; retry later")
        REQUESTS.labels("meta", "quarantined").inc()
        return web.Response(text="EVENT_RECEIVED")

    async def _store_quarantined(self, tenant_id: str, body: bytes, problem: str) -> bool:
        """Keep a signed body (or part of one) the pipeline will not take, for a person and for re-ingest."""
        received = datetime.now(UTC)
        key = f"{QUARANTINE_PREFIX}/" + archive_key(tenant_id, received, hashlib.sha256(body).hexdigest()[:32])
        if not await self._d.archive.put_object(tenant_id, key, body, [], content_type="application/json"):
            return False
        QUARANTINED.inc()
        log.error("quarantined a signed webhook for tenant %s at %s: %s", tenant_id, key, loggable(problem, 200))
        return True

    # --- Genesys ----------------------------------------------------------------------------

    async def receive_genesys(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            return await self._receive_genesys(request)
        finally:
            LATENCY.labels("genesys").observe(time.perf_counter() - started)

    async def _receive_genesys(self, request: web.Request) -> web.Response:
        body = await request.read()  # read whole, within its deadline and size cap, by ``Admission``
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            return _answer("genesys", 401, "unsigned", f"missing {SIGNATURE_HEADER}")
        try:
            payload = orjson.loads(body)
            message_id = str(payload["id"])
            integration_id = str(payload["channel"]["id"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            log.warning("genesys webhook without id or channel.id refused: %r", exc)
            return _answer("genesys", 400, "malformed", "expected an Open Messaging message with id and channel.id")
        tenant = await self._d.tenants.by_integration_id(integration_id)
        if tenant is None:
            REFUSALS.log(
                "genesys webhook for unknown integration %s (message %s)",
                loggable(integration_id),
                loggable(message_id),
            )
            return _answer(
                "genesys", 404, "unknown_integration", f"no tenant has integration {loggable(integration_id)}"
            )
        if not genesys_signature_valid(tenant.secrets.genesys_webhook_secret.get_secret_value(), body, signature):
            REFUSALS.log(
                "genesys webhook for tenant %s: signature does not verify (message %s)", tenant.id, loggable(message_id)
            )
            return _answer("genesys", 401, "bad_signature", "signature does not verify")
        # Genesys reuses a message's id for its receipts: Delivered, then Read, then Failed… each its
        # own event. Its retries repeat all three fields.
        what = ":".join(_dedupe_part(payload.get(field)) for field in ("type", "status"))
        dedupe_key = self._settings.redis_key(f"genesys:webhook:{tenant.id}:{message_id}:{what}")
        try:
            if await self._d.redis.exists(dedupe_key):
                REQUESTS.labels("genesys", "duplicate").inc()
                return web.json_response({"status": "duplicate"})
        except RedisError as exc:
            log.warning("genesys dedupe unavailable (redis: %s); downstream dedupes message %s", exc, message_id)
        headers = {"source": "genesys", "tenant_id": tenant.id, "received_at": epoch_header(time.time())}
        try:
            await self._d.publisher.publish(self._settings.queue(GENESYS_OUTBOUND_EVENTS), body, headers)
        except TransientError as exc:
            QUEUE_FAILURES.inc()
            QUEUE_UNAVAILABLE.set(1)
            log.error("genesys webhook %s for tenant %s not queued, answered 503: %s", message_id, tenant.id, exc)
            return _answer("genesys", 503, "queue_unavailable", "not durably queued; retry later")
        QUEUE_UNAVAILABLE.set(0)
        try:
            # Marked only once durable, so a failed publish never turns Genesys's retry into a drop.
            await self._d.redis.set(dedupe_key, b"1", ex=GENESYS_DEDUPE_TTL_S)
        except RedisError as exc:
            log.warning("genesys dedupe key not stored (redis: %s)", exc)
        REQUESTS.labels("genesys", "queued").inc()
        return web.json_response({"status": "accepted"})


def _dedupe_part(value: object) -> str:
    """A short, stable piece of a dedupe key from a field a stranger may have made anything."""
    return str(value)[:32] if isinstance(value, str | int) and not isinstance(value, bool) else "-"


def _answer(endpoint: str, status: int, outcome: str, message: str) -> web.Response:
    REQUESTS.labels(endpoint, outcome).inc()
    response = web.Response(
        status=status, body=orjson.dumps({"error": outcome, "message": message}), content_type="application/json"
    )
    if status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def _endpoint_label(endpoint: str) -> str:
    """A metric label from a fixed set, whatever path a caller made up."""
    return endpoint if endpoint in ("meta", "genesys") else "other"


class Admission:
    """Bounds the webhooks worked on at once; past the bound, a quick 503 (see the module doc).

    A slot is taken only once the request's body is complete: a stranger who sends a head and then
    nothing (or a byte a second) holds a connection, bounded by ``connection_guard``, never a slot
    that signed webhooks need. The body is read under a deadline: its declared size at a minimum
    rate, plus a fixed allowance."""

    def __init__(self, settings: Settings) -> None:
        self._slots = asyncio.Semaphore(settings.webhook_max_in_flight)
        self._wait_s = settings.webhook_admission_wait_s
        self._body_timeout_s = settings.webhook_body_timeout_s
        self._min_rate = settings.webhook_min_body_bytes_per_s
        self._max_body = settings.webhook_max_body_bytes

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        connection_guard.request_started(request)
        try:
            return await self._admitted(request, handler)
        finally:
            connection_guard.request_finished(request)

    async def _admitted(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # Every webhook endpoint, Meta's verify handshake (GET) included: it needs the tenants too.
        if not request.path.startswith("/webhook/"):
            return await handler(request)
        endpoint = request.path.removeprefix("/webhook/")[:16]
        if request.can_read_body:
            declared = min(request.content_length or self._max_body, self._max_body)
            deadline = self._body_timeout_s + declared / self._min_rate
            try:
                await asyncio.wait_for(request.read(), deadline)
            except TimeoutError:
                SLOW_BODIES.inc()
                REFUSALS.log("%s webhook body not complete within %.0f s: answered 408", endpoint, deadline)
                response = _answer(_endpoint_label(endpoint), 408, "body_timeout", "request body too slow")
                response.force_close()
                return response
            except web.HTTPRequestEntityTooLarge:
                message = f"body over {self._max_body} bytes"
                return _answer(_endpoint_label(endpoint), 413, "body_too_large", message)
            except ConnectionError:
                # The client went away mid-body: nobody to answer, nothing taken.
                return _answer(_endpoint_label(endpoint), 400, "client_gone", "connection lost mid-body")
        try:
            await asyncio.wait_for(self._slots.acquire(), self._wait_s)
        except TimeoutError:
            log.warning("edge saturated: %s webhook answered 503 (retry after %d s)", endpoint, RETRY_AFTER_S)
            return _answer(_endpoint_label(endpoint), 503, "overloaded", "busy; retry")
        IN_FLIGHT.inc()
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception as exc:
            # A dependency the handler needed is down (PostgreSQL for a tenant lookup, say), or a
            # bug: either way nothing was acknowledged, so "retry later" loses nothing.
            decided = classify(exc)
            bug = isinstance(decided, PermanentError)
            log.error("%s webhook not taken, answered 503: %s", endpoint, decided, exc_info=bug)
            return _answer(_endpoint_label(endpoint), 503, "unavailable", "retry later")
        finally:
            IN_FLIGHT.dec()
            self._slots.release()


async def build_edge(settings: Settings) -> tuple[web.Application, EdgeDeps]:
    """The aiohttp application with its dependencies; closed with the application's cleanup."""
    pool = await postgres.connect(settings, min_size=1, max_size=5)
    redis = redis_client.client(settings)
    box = SecretBox.from_settings(settings)
    storage = s3.client(settings)
    deps = EdgeDeps(
        settings=settings,
        tenants=TenantDirectory(TenantStore(pool, box), redis, box, settings),
        redis=redis,
        s3=storage,
        publisher=DurablePublisher(settings),
        pool=pool,
        archive=RawArchive(storage, settings.s3_bucket_webhooks),
    )
    edge = WebhookEdge(deps)
    admission = Admission(settings)
    app = web.Application(client_max_size=settings.webhook_max_body_bytes, middlewares=[admission.middleware])
    app.add_routes(
        [
            web.get("/webhook/meta", edge.verify),
            web.post("/webhook/meta", edge.receive_meta),
            web.post("/webhook/genesys", edge.receive_genesys),
        ]
    )

    async def close(_: web.Application) -> None:
        await deps.archive.close()
        await deps.publisher.close()
        await s3.close(deps.s3)
        await redis.aclose()
        await pool.close()

    app.on_cleanup.append(close)
    return app, deps


def build_ops(deps: EdgeDeps) -> web.Application:
    """The edge's operations listener (``webhook_ops_port``): ``/healthz``, ``/readyz``, ``/metrics``."""
    app = web.Application()
    checks = {
        "rabbitmq": deps.publisher.healthy,
        "redis": lambda: _redis_ping(deps.redis),
        "postgres": lambda: _pg_ping(deps.pool),
    }
    app.add_routes(health_routes(checks))
    return app


async def serve_edge(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Run the edge: webhooks on ``webhook_port``, operations on ``webhook_ops_port``, until SIGTERM/SIGINT."""
    app, deps = await build_edge(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    runners = []
    try:
        # The webhook listener first: the operations port answers /healthz only once webhooks
        # can be taken (a webhook port that cannot be bound stops the process before that).
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=settings.webhook_keepalive_s)
        runners.append(runner)
        await runner.setup()
        guard = ConnectionGuard(settings)
        await GuardedSite(runner, host or settings.webhook_host, port or settings.webhook_port, guard).start()
        ops = web.AppRunner(build_ops(deps), access_log=None)
        runners.append(ops)
        await ops.setup()
        await web.TCPSite(ops, settings.webhook_ops_host, settings.webhook_ops_port).start()
        log.info("webhook edge listening on %s:%s", host or settings.webhook_host, port or settings.webhook_port)
        await stopping.wait()
    finally:
        # The operations listener stops first, the webhook listener last (its cleanup closes the
        # shared dependencies).
        for runner in reversed(runners):
            await runner.cleanup()


async def _redis_ping(redis: aioredis.Redis) -> bool:
    return bool(await redis.ping())


async def _pg_ping(pool: Any) -> bool:
    return bool(await pool.fetchval("SELECT 1") == 1)
