"""Logging, and the /healthz, /readyz and /metrics routes every process exposes."""

from __future__ import annotations

import asyncio
import logging
import logging.config
import platform
import time
from collections.abc import Awaitable, Callable, Mapping

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Info, generate_latest

from wabridge import __version__

ReadinessCheck = Callable[[], Awaitable[bool]]


# ``wabridge_build_info{version,python}`` 1, on every process: which build each instance runs.
BUILD_INFO = Info("wabridge_build", "The wabridge build this process runs")
BUILD_INFO.info({"version": __version__, "python": platform.python_version()})


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


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Context a log call may give (``extra=``), copied into a JSON line when present. ``customer`` is
# always masked by the caller (masking.mask_key / mask_customer_id).
CONTEXT_FIELDS = ("tenant", "stage", "customer", "message_id", "reason")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, process, logger, message, the context fields a call
    gave, and the error's type and text. Every process, Faust's own lines included."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self._process = process

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "process": self._process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            value = record.__dict__.get(field)
            if value is not None:
                line[field] = value
        if record.exc_info and record.exc_info[1] is not None:
            line["error"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
            line["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def logging_config(level: str, log_format: str, process: str) -> dict[str, object]:
    """The ``logging.config.dictConfig`` of a process (Faust's worker takes it too)."""
    formatter: dict[str, object] = (
        {"()": JsonFormatter, "process": process} if log_format == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"wabridge": formatter},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "wabridge", "stream": "ext://sys.stderr"}
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
    }


def configure_logging(level: str, log_format: str = "text", process: str = "wabridge") -> None:
    """Log lines of this process as ``log_format`` (``text`` or ``json``, WABRIDGE_LOG_FORMAT)."""
    logging.config.dictConfig(logging_config(level, log_format, process))


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
