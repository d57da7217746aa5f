"""Route a web request to the worker that owns its key in a table (``table_route``, done fully).

Faust's ``@app.table_route`` takes the key from one query or path parameter and forwards only
the method, headers and URL: a POST's body is lost, a key cannot come from the body, and a key made of two parameters
(``/state/mapping/{waId}?tenantId=``) cannot be expressed. :func:`route_to_key_owner` takes the
key from a function of the request and forwards the body too.

The owner is found the way Faust finds it: the key, serialized by the table's key serializer
(raw, like the stage topics: see ``streams.app``), hashed by the producer's partitioner over the
changelog's partitions, then the worker the group assigned that partition to. A forwarded request
carries ``X-Wabridge-Routed``; a worker that receives one serves it itself, so two workers with
different views of the assignment during a rebalance cannot bounce a request between them.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

import aiohttp
from faust.types import TableT
from faust.web import Request, Response, View
from yarl import URL

from wabridge.streams.types import AnyTable

ROUTED_HEADER = "X-Wabridge-Routed"
# Hop-by-hop and recomputed headers are not forwarded.
_DROP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive"})

ViewMethod = Callable[..., Awaitable[Response]]


class BadKey(ValueError):
    """The request does not name a valid key: answered with 400 and this message."""


def route_to_key_owner(
    table: AnyTable | Callable[[View, Request], AnyTable], key_of: Callable[[Request], str | Awaitable[str]]
) -> Callable[[ViewMethod], ViewMethod]:
    """Decorate a ``View`` method so it runs on the worker that owns ``key_of(request)`` in ``table``.

    ``table`` is the table, or a function of the view and request that returns it (for views
    defined once, at module level, and added to an app later). ``key_of`` may be a coroutine function, to take the
    key from the body (aiohttp keeps the body read, so the view and the forward read it again). It
    raises :class:`BadKey` (or ``KeyError`` for a missing parameter) → 400. While the group has no
    assignment yet, or the owner cannot be reached → 503 (retry shortly).
    """

    def table_of(view: View, request: Request) -> AnyTable:
        if isinstance(table, TableT):
            return table
        return table(view, request)

    def decorator(method: ViewMethod) -> ViewMethod:
        @wraps(method)
        async def routed(view: View, request: Request, *args: Any, **kwargs: Any) -> Response:
            try:
                key = key_of(request)
                if inspect.isawaitable(key):
                    key = await key
            except (BadKey, KeyError) as exc:
                return view.json({"error": f"bad key: {exc}"}, status=400)
            if ROUTED_HEADER not in request.headers:
                owner = owner_url(table_of(view, request), key)
                if owner is None:
                    return view.json({"error": "partition assignment not known yet"}, status=503)
                if not _same_node(owner, URL(str(view.app.conf.canonical_url))):
                    return await _forward(view, request, owner)
            return await method(view, request, *args, **kwargs)

        return routed

    return decorator


def owner_url(table: AnyTable, key: str) -> URL | None:
    """The web URL of the worker that owns ``key`` in ``table``, or None before an assignment."""
    try:
        return table.app.router.key_store(table.name, key)
    except KeyError:
        return None


def _same_node(a: URL, b: URL) -> bool:
    return (a.host, a.port) == (b.host, b.port)


async def _forward(view: View, request: Request, owner: URL) -> Response:
    target = request.url.with_scheme(owner.scheme).with_host(owner.host or "").with_port(owner.port)
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP_HEADERS}
    headers[ROUTED_HEADER] = "1"
    body = await request.read()
    try:
        async with view.app.http_client.request(request.method, target, headers=headers, data=body or None) as response:
            payload = await response.read()
            return view.bytes(payload, content_type=response.content_type, status=response.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return view.json({"error": f"owner {owner} unreachable: {exc}"}, status=503)
