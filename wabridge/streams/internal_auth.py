"""Who may call a worker's web server: holders of the deployment token (``WABRIDGE_INTERNAL_TOKEN``).

The worker's web server answers the State API (customers' names and numbers), ``/auth/token``
(live Genesys bearer tokens), Faust's table and router views, and the requests other workers
forward to a key's owner. Every route but ``/healthz``, ``/readyz`` and ``/metrics`` requires

    Authorization: Bearer <WABRIDGE_INTERNAL_TOKEN>

compared in constant time, on bytes (a header with non-ASCII characters is refused like any wrong
one, not a 500). A request without it, or with another, gets ``401`` and nothing else: no body that
says which routes exist or which tenant is known.

Chosen over mTLS because every process and every operator tool already reads the settings, a
token rotates by a restart, and mTLS needs a certificate authority per deployment; a deployment
that wants transport encryption between workers puts them on a private network or a mesh.

Without a token configured the protected routes refuse everything (fail closed), and the worker
says so once at start. ``wabridge dev up`` writes a random token into ``.wabridge/dev.env``.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import SecretStr

from wabridge.settings import Settings

log = logging.getLogger(__name__)

# Probes and scrapers carry no credential; these three say nothing about a tenant or a customer.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_SCHEME = b"bearer "

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def generate_token() -> str:
    """A new deployment token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def authorization(settings: Settings) -> dict[str, str]:
    """The header an internal client sends (empty when no token is configured: it will get 401)."""
    if settings.internal_token is None:
        return {}
    return {"Authorization": f"Bearer {settings.internal_token.get_secret_value()}"}


def authorized(token: SecretStr | None, header: str | None) -> bool:
    """Whether ``header`` (an ``Authorization`` value) carries ``token``."""
    if token is None or not header:
        return False
    given = header.encode("utf-8", "surrogateescape")
    if given[: len(_SCHEME)].lower() != _SCHEME:
        return False
    return hmac.compare_digest(given[len(_SCHEME) :].strip(), token.get_secret_value().encode())


def middleware(settings: Settings) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """The aiohttp middleware that guards every route but :data:`OPEN_PATHS`."""
    token = settings.internal_token
    if token is None:
        log.warning(
            "WABRIDGE_INTERNAL_TOKEN is not set: the State API, /auth/token and table views refuse every request"
        )

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or authorized(token, request.headers.get("Authorization")):
            return await handler(request)
        return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})

    return require_token
