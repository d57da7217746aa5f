"""The request log both simulators share: every request, one log line, and ``/__sim/requests``.

Tests and benchmarks read back exactly what the bridge sent (headers, parsed body, the status the
simulator answered) instead of trusting the bridge's own account of it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import ValidationError

ADMIN_PREFIX = "/__sim/"
# Handlers put the tenant key of a request here (integration id or phone_number_id) for filtering.
TAG_KEY = web.RequestKey("sim_tag", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class RecordedRequest:
    sequence: int
    received_at: datetime
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int = 0
    duration_ms: float = 0.0
    tag: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            # Microseconds: benchmarks order and time requests below one millisecond.
            "received_at": self.received_at.isoformat(timespec="microseconds"),
            "received_at_epoch": self.received_at.timestamp(),
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body,
            "status": self.status,
            "duration_ms": round(self.duration_ms, 3),
            "tag": self.tag,
        }


def parse_body(content_type: str, raw: bytes) -> Any:
    """The body as a test would want to read it: JSON parsed, forms as dicts, binary as its size."""
    if not raw:
        return None
    if "json" in content_type:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {"unparsed": raw.decode("utf-8", "replace")}
    if content_type.startswith("application/x-www-form-urlencoded"):
        return dict(parse_qsl(raw.decode("utf-8", "replace")))
    if content_type.startswith("text/"):
        return raw.decode("utf-8", "replace")
    return {"bytes": len(raw), "content_type": content_type}


@dataclass
class RequestLog:
    """A bounded, in-process log of the requests a simulator received (admin calls excluded)."""

    max_entries: int = 100_000
    _entries: deque[RecordedRequest] = field(init=False)
    _sequence: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._entries = deque(maxlen=self.max_entries)

    def start(self, request: web.Request, raw_body: bytes) -> RecordedRequest:
        self._sequence += 1
        entry = RecordedRequest(
            sequence=self._sequence,
            received_at=datetime.now(UTC),
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={str(name): value for name, value in request.headers.items()},
            body=parse_body(request.content_type, raw_body),
        )
        self._entries.append(entry)
        return entry

    def select(self, *, tag: str | None = None, path: str | None = None, since: int = 0) -> list[RecordedRequest]:
        return [
            entry
            for entry in self._entries
            if entry.sequence > since
            and (tag is None or entry.tag == tag)
            and (path is None or entry.path.startswith(path))
        ]

    def clear(self) -> None:
        self._entries.clear()


def request_log_middleware(log: RequestLog, logger: logging.Logger) -> Middleware:
    """Record each non-admin request and write one log line per request (admin calls included)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        is_admin = request.path.startswith(ADMIN_PREFIX)
        entry = None
        if not is_admin:
            # Multipart bodies stay unread here so the handler can stream them (aiohttp reads a
            # body once); the log keeps their size.
            raw = b"" if request.content_type.startswith("multipart/") else await request.read()
            entry = log.start(request, raw)
            if request.content_type.startswith("multipart/"):
                entry.body = {"multipart": True, "bytes": request.content_length}
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        finally:
            duration_ms = (time.perf_counter() - started) * 1000
            tag = request.get(TAG_KEY)
            if entry is not None:
                entry.status, entry.duration_ms, entry.tag = status, duration_ms, tag
            logger.info(
                "%s %s %d %.1fms%s",
                request.method,
                request.path,
                status,
                duration_ms,
                f" tag={tag}" if tag else "",
            )

    return middleware


def add_inspection_routes(app: web.Application, log: RequestLog, tag_query: str) -> None:
    """``GET /__sim/requests?{tag_query}=…&path=…&since=…`` and ``DELETE /__sim/requests``."""

    async def list_requests(request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        entries = log.select(tag=request.query.get(tag_query), path=request.query.get("path"), since=since)
        return json_response({"requests": [entry.to_json() for entry in entries]})

    async def clear_requests(request: web.Request) -> web.Response:
        log.clear()
        return web.Response(status=204)

    app.router.add_get("/__sim/requests", list_requests)
    app.router.add_delete("/__sim/requests", clear_requests)


def json_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


async def apply_admin_change(request: web.Request, apply: Callable[[Any], None]) -> web.Response:
    """Run an admin change from a JSON body: 204, or 400 with the reason when it does not fit."""
    try:
        apply(orjson.loads(await request.read() or b"{}"))
    except (ValidationError, ValueError, TypeError, KeyError) as error:
        return json_response({"error": str(error)}, status=400)
    return web.Response(status=204)


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
