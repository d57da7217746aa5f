"""What a stranger can hold of the webhook port: connections, and time before a request is whole.

Before a signature is checked, a request costs bounded time, memory and connections (ARCHITECTURE.md,
invariant 8). ``Admission`` (``connectors.webhook``) takes a work slot only once a request's body is
complete, read under a deadline; this module bounds the rest, at the connection:

* open connections in total (``webhook_max_connections``) and, where the edge faces the internet
  itself, per client address (``webhook_max_connections_per_address``; off by default, since behind
  a load balancer every connection comes from its address); a connection over either is closed at
  once;
* the time a connection may take to send a complete request head (``webhook_header_timeout_s``):
  a client that trickles its headers a byte a second is closed, whatever the rate;
* idle keep-alive connections close after ``webhook_keepalive_s``.

aiohttp has none of these of its own (its handler waits for a request head as long as the client
keeps the connection open), so the webhook site wraps each connection's protocol.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter as Tally
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Gauge

from wabridge.observability import ThrottledLog
from wabridge.settings import Settings

log = logging.getLogger(__name__)
REFUSED_LOG = ThrottledLog(log)

CONNECTIONS = Gauge("wabridge_webhook_connections", "Open connections to the webhook port")
CLOSED = Counter(
    "wabridge_webhook_connections_closed_total",
    "Connections the webhook port closed before a request, by why",
    ["reason"],
)


class ConnectionGuard:
    """Counts the webhook port's connections and closes those over the caps or too slow to speak."""

    def __init__(self, settings: Settings) -> None:
        self._max_total = settings.webhook_max_connections
        self._max_per_address = settings.webhook_max_connections_per_address
        self.header_timeout_s = settings.webhook_header_timeout_s
        self._open = 0
        self._by_address: Tally[str] = Tally()

    def admit(self, address: str) -> bool:
        if self._open >= self._max_total:
            CLOSED.labels("total_cap").inc()
            REFUSED_LOG.log("webhook port at its %d connections: a new one closed", self._max_total)
            return False
        if self._max_per_address and self._by_address[address] >= self._max_per_address:
            CLOSED.labels("address_cap").inc()
            REFUSED_LOG.log("a client address holds %d connections: a new one closed", self._max_per_address)
            return False
        self._open += 1
        self._by_address[address] += 1
        CONNECTIONS.set(self._open)
        return True

    def release(self, address: str) -> None:
        self._open -= 1
        self._by_address[address] -= 1
        if self._by_address[address] <= 0:
            del self._by_address[address]
        CONNECTIONS.set(self._open)


class _GuardedProtocol(asyncio.Protocol):
    """aiohttp's request handler for one connection, behind the guard's caps and head deadline."""

    def __init__(self, inner: Any, guard: ConnectionGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._address: str | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if not self._guard.admit(address):
            transport.abort()
            return
        self._address, self._transport = address, transport
        self._inner.connection_made(transport)
        self._deadline = asyncio.get_running_loop().call_later(self._guard.header_timeout_s, self._too_slow)
        _ACTIVE[transport] = self

    def request_started(self) -> None:
        """A complete request head arrived: the head deadline is met."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def request_finished(self) -> None:
        """Answered: the next request on this connection has the same time for its head."""
        if self._deadline is None and self._transport is not None and not self._transport.is_closing():
            self._deadline = asyncio.get_running_loop().call_later(self._guard.header_timeout_s, self._too_slow)

    def _too_slow(self) -> None:
        self._deadline = None
        if self._transport is not None and not self._transport.is_closing():
            CLOSED.labels("header_timeout").inc()
            REFUSED_LOG.log("a client sent no complete request head in %g s: closed", self._guard.header_timeout_s)
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        result: bool | None = self._inner.eof_received()
        return result

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._address is None:
            return  # refused at once: aiohttp never saw it
        if self._deadline is not None:
            self._deadline.cancel()
        if self._transport is not None:
            _ACTIVE.pop(self._transport, None)
        self._guard.release(self._address)
        self._address = None
        self._inner.connection_lost(exc)


# Each open connection's guard, by its transport: the middleware marks its request as started.
_ACTIVE: dict[Any, _GuardedProtocol] = {}


def request_started(request: web.Request) -> None:
    """Called by the webhook middleware for every request: its head is complete."""
    guarded = _ACTIVE.get(request.transport)
    if guarded is not None:
        guarded.request_started()


def request_finished(request: web.Request) -> None:
    guarded = _ACTIVE.get(request.transport)
    if guarded is not None:
        guarded.request_finished()


class GuardedSite(web.TCPSite):
    """``web.TCPSite`` whose every connection goes through a ``ConnectionGuard``."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard) -> None:
        super().__init__(runner, host, port)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _GuardedProtocol(server(), self._guard),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
