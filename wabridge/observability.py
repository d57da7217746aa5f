"""Logging, and the /healthz, /readyz and /metrics routes every process exposes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

ReadinessCheck = Callable[[], Awaitable[bool]]


class NotReady(Exception):
    """Raised by a readiness check to say why it is not ready; ``/readyz`` reports the reason."""


class ThrottledLog:
    """Lines that anyone on the internet can cause (refused webhooks): at most one per kind a period.

    A flood of refused requests must not become a flood of log lines (disk, and the operator's
    attention). The first of each kind (its format string) is logged; the others within
    ``period_s`` are counted, and the next one logged says how many there were. Every refusal is
    also in a metric, so nothing goes uncounted.
    """

    def __init__(self, logger: logging.Logger, level: int = logging.WARNING, period_s: float = 10.0) -> None:
        self._logger = logger
        self._level = level
        self._period_s = period_s
        self._last: dict[str, tuple[float, int]] = {}

    def log(self, message: str, *args: object) -> None:
        now = time.monotonic()
        last, suppressed = self._last.get(message, (float("-inf"), 0))
        if now - last < self._period_s:
            self._last[message] = (last, suppressed + 1)
            return
        self._last[message] = (now, 0)
        if suppressed:
            message += f" ({suppressed} more like it in the last {self._period_s:g} s not logged)"
        self._logger.log(self._level, message, *args)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def health_routes(checks: Mapping[str, ReadinessCheck], registry: CollectorRegistry = REGISTRY) -> list[web.RouteDef]:
    """``/healthz``: the process runs. ``/readyz``: every dependency answers. ``/metrics``: Prometheus."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        names = list(checks)
        results = await asyncio.gather(*(_guarded(checks[name]) for name in names))
        report = dict(zip(names, results, strict=True))
        status = 200 if all(result is True for result in results) else 503
        return web.Response(
            status=status, body=orjson.dumps({"ready": status == 200, "dependencies": report}),
            content_type="application/json",
        )  # fmt: skip

    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    return [web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics)]


async def _guarded(check: ReadinessCheck) -> bool | str:
    """True when ready; False, or the reason a check gave (``NotReady``), when not."""
    try:
        return await asyncio.wait_for(check(), 3.0)
    except NotReady as exc:
        return str(exc)
    except Exception:
        logging.getLogger(__name__).debug("readiness check failed", exc_info=True)
        return False
