"""Agent attachments, fetched only from Genesys: never from the worker's own network.

A Genesys outbound webhook names the URL of each agent attachment, and anyone holding a tenant's
webhook secret can write that URL. So a fetch goes only to an allowed origin (scheme, host, port):

* the tenant's Genesys API host (``https://api.{region}``, or its ``genesys_api_url``), and the
  origins in ``WABRIDGE_GENESYS_ATTACHMENT_ORIGINS`` (comma-separated: where Genesys's download
  links redirect to in a deployment);
* over https, and to public addresses only: every address a host name resolves to is checked
  before connecting (``_PublicOnlyResolver``, so a name cannot resolve to one address for the check
  and another for the connection), and a literal address in the URL likewise. Loopback, private,
  link-local (cloud metadata at 169.254.169.254), shared, multicast and reserved ranges are refused;
* redirects are followed by hand, at most ``MAX_REDIRECTS``, each hop checked as the first.

``WABRIDGE_GENESYS_ATTACHMENT_INSECURE_ORIGINS`` names origins allowed over plain http and on any
address: the embedded stack's Genesys simulator (``wabridge run`` sets it), a test's own server.

The agent's receipt says only "attachment host not allowed" or "attachment unavailable": never the
peer's own words, which would let a stranger read what the worker can reach.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from prometheus_client import Counter

from wabridge.errors import PermanentError, TransientError
from wabridge.settings import Settings
from wabridge.tenants import Tenant

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3
_CHUNK_BYTES = 256 * 1024

REFUSED = Counter("wabridge_attachment_fetches_refused_total", "Agent attachment URLs not fetched, by why", ["reason"])

HOST_NOT_ALLOWED = "attachment host not allowed"
UNAVAILABLE = "attachment unavailable"


class AttachmentRefused(PermanentError):
    """The URL is not one the worker may fetch: off the allow-list, not https, or not public."""

    def __init__(self, why: str) -> None:
        super().__init__(HOST_NOT_ALLOWED, reason="attachment_host_not_allowed")
        self.why = why  # for our log, never for the agent


class AttachmentUnavailable(PermanentError):
    """Genesys's URL answered no file (a 4xx, or a redirect loop): the agent is told no more."""

    def __init__(self, why: str) -> None:
        super().__init__(UNAVAILABLE, reason="attachment_unavailable")
        self.why = why


class AttachmentTooLarge(PermanentError):
    def __init__(self, size: int) -> None:
        super().__init__(f"the attachment is over {size} bytes", reason="attachment_too_large")
        self.size = size


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin | None:
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            return None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            return None
        return cls(scheme, parts.hostname.lower().rstrip("."), port or (443 if scheme == "https" else 80))


def _origins(text: str) -> frozenset[Origin]:
    return frozenset(o for o in (Origin.of(item) for item in text.split(",") if item.strip()) if o is not None)


def is_public(address: str) -> bool:
    """Whether ``address`` is a public unicast address (not loopback, private, link-local, shared,
    multicast, reserved or unspecified; an IPv4-mapped IPv6 address is judged as its IPv4)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class _PublicOnlyResolver(AbstractResolver):
    """Resolves as usual, then keeps only public addresses; none left: the host is refused."""

    def __init__(self) -> None:
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        public = [entry for entry in found if is_public(entry["host"])]
        if not public:
            REFUSED.labels("address").inc()
            raise OSError(f"{host} resolves to no public address")
        return public

    async def close(self) -> None:
        await self._inner.close()


class AttachmentFetcher:
    """Fetches agent attachments for every tenant of a worker; one per worker."""

    def __init__(self, settings: Settings, *, timeout_s: float = 120.0, read_timeout_s: float = 30.0) -> None:
        self._extra = _origins(settings.genesys_attachment_origins)
        self._insecure = _origins(settings.genesys_attachment_insecure_origins)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=10.0, sock_read=read_timeout_s)
        self._public: aiohttp.ClientSession | None = None
        self._trusted: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        for session in (self._public, self._trusted):
            if session is not None:
                await session.close()
        self._public = self._trusted = None

    def allowed(self, tenant: Tenant) -> frozenset[Origin]:
        api = Origin.of(tenant.config.genesys_api_base)
        return self._extra | self._insecure | ({api} if api is not None else frozenset())

    def check(self, tenant: Tenant, url: str) -> Origin:
        """The URL's origin if the worker may fetch it; ``AttachmentRefused`` otherwise."""
        origin = Origin.of(url)
        if origin is None:
            REFUSED.labels("url").inc()
            raise AttachmentRefused(f"not an http(s) URL: {url[:80]!r}")
        if origin not in self.allowed(tenant):
            REFUSED.labels("origin").inc()
            raise AttachmentRefused(f"{origin.scheme}://{origin.host}:{origin.port} is not an allowed origin")
        if origin in self._insecure:
            return origin
        if origin.scheme != "https":
            REFUSED.labels("scheme").inc()
            raise AttachmentRefused(f"{origin.host}: plain http")
        try:
            literal = ipaddress.ip_address(origin.host.strip("[]"))
        except ValueError:
            return origin  # a name: its addresses are checked as it is resolved (_PublicOnlyResolver)
        if not is_public(str(literal)):
            REFUSED.labels("address").inc()
            raise AttachmentRefused(f"{origin.host} is not a public address")
        return origin

    async def fetch(self, tenant: Tenant, url: str, max_bytes: int) -> bytes:
        """The file at ``url`` (Genesys's); ``AttachmentRefused``, ``AttachmentUnavailable``,
        ``AttachmentTooLarge`` (permanent) or ``TransientError`` (try again)."""
        for _ in range(MAX_REDIRECTS + 1):
            origin = self.check(tenant, url)
            session = self._session(trusted=origin in self._insecure)
            try:
                async with session.get(url, allow_redirects=False, timeout=self._timeout) as response:
                    if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                        url = urljoin(url, response.headers["Location"])
                        continue
                    return await _body(response, max_bytes)
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, OSError) and "no public address" in str(exc.os_error):
                    raise AttachmentRefused(str(exc.os_error)) from exc
                raise TransientError(f"attachment fetch: {type(exc).__name__}") from exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise TransientError(f"attachment fetch: {type(exc).__name__}") from exc
        REFUSED.labels("redirects").inc()
        raise AttachmentUnavailable(f"more than {MAX_REDIRECTS} redirects")

    def _session(self, *, trusted: bool) -> aiohttp.ClientSession:
        if trusted:
            if self._trusted is None or self._trusted.closed:
                self._trusted = aiohttp.ClientSession()
            return self._trusted
        if self._public is None or self._public.closed:
            connector = aiohttp.TCPConnector(resolver=_PublicOnlyResolver())
            self._public = aiohttp.ClientSession(connector=connector)
        return self._public


async def _body(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    if response.status in (408, 429) or response.status >= 500:
        raise TransientError(f"attachment fetch: HTTP {response.status}")
    if response.status != 200:
        raise AttachmentUnavailable(f"HTTP {response.status}")
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        raise AttachmentTooLarge(max_bytes)
    received = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
        received += chunk
        if len(received) > max_bytes:
            raise AttachmentTooLarge(max_bytes)
    return bytes(received)


def describe(exc: Any) -> str:
    """What our own log says of a refused or unavailable attachment (the agent sees less)."""
    return str(getattr(exc, "why", exc))
