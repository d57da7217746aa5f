"""The seed's Auth Service, as a view on the worker's Faust web server: ``GET /auth/token``.

    GET /auth/token        X-Tenant-ID: acme
    200 {"access_token": "…", "expires_in": 86100, "token_type": "Bearer"}

The token comes from ``GenesysAuth``: the same Redis cache and single-flight refresh the stage
agents use, so asking here never mints an extra token. Errors are JSON ``{"error": …}``: 400 without
the header, 404 for an unknown tenant, 403 for a disabled one, 502 when the Genesys login fails
(``reason`` says why), 503 when the tenant directory cannot be read.

It hands out bearer tokens, so it belongs on the internal network only: the worker's web server
binds ``Settings.worker_host`` (127.0.0.1 by default).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import asyncpg
import faust
from faust.web import Request, Response, View
from redis.exceptions import RedisError

from wabridge.connectors.genesys import GenesysAuth
from wabridge.errors import ConfigurationError, PermanentError, TenantHeld, TransientError
from wabridge.tenants import Tenant

log = logging.getLogger(__name__)

TENANT_HEADER = "X-Tenant-ID"


class TenantLookup(Protocol):
    """What the view needs of ``connectors.tenant_directory.TenantDirectory``."""

    async def by_id(self, tenant_id: str) -> Tenant | None: ...


def register_auth_api(app: faust.App, auth: GenesysAuth, directory: Callable[[], Awaitable[TenantLookup]]) -> None:
    """Add ``GET /auth/token`` to ``app``'s web server.

    ``directory`` returns the tenant directory; it is awaited per request so it can be built
    lazily (its PostgreSQL pool opens on first use, like ``StageContext.pool``).
    """

    @app.page("/auth/token")
    class AuthTokenView(View):
        async def get(self, request: Request) -> Response:
            tenant_id = request.headers.get(TENANT_HEADER, "").strip()
            if not tenant_id:
                return self.error(400, f"the {TENANT_HEADER} header is required")
            try:
                tenant = await (await directory()).by_id(tenant_id)
            except (TransientError, OSError, asyncpg.PostgresError, RedisError) as exc:
                return self.error(503, f"the tenant directory is unavailable: {exc}")
            except ConfigurationError as exc:
                log.error("tenant %s cannot be loaded: %s", tenant_id, exc)
                return self.error(500, "the tenant's configuration cannot be loaded")
            if tenant is None:
                return self.error(404, f"unknown tenant {tenant_id!r}")
            if not tenant.active:
                return self.error(403, f"tenant {tenant_id!r} is disabled")
            try:
                token = await auth.access_token(tenant)
            except (PermanentError, TenantHeld) as exc:
                return self.json({"error": f"Genesys login failed: {exc}", "reason": exc.reason}, status=502)
            except TransientError as exc:
                headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after else None
                body = {"error": f"Genesys login failed: {exc}", "reason": "genesys_unavailable"}
                return self.json(body, status=502, headers=headers)
            return self.json(
                {"access_token": token.value, "expires_in": int(token.expires_in()), "token_type": "Bearer"},
                headers={"Cache-Control": "no-store"},
            )
