"""Whether a failure is retried: the one decision (STYLE.md §5), for every stage and connector.

Each connector keeps its own mapping of what its library raises (``connectors.postgres.classify``,
``connectors.kafka.classify``); this module asks them in turn and decides what none of them
claims:

* our own ``TransientError`` / ``PermanentError`` pass through, decided where they were raised;
* a dependency that cannot be reached (connection errors, timeouts, Redis and aiohttp errors, an
  ``OSError`` with a network errno) is transient: the same work succeeds once it is back;
* anything else is permanent. Code that ran on a record and raised ``ValueError``, ``TypeError``,
  ``OverflowError``, ``decimal.InvalidOperation``, ``RecursionError``… did so because of what the
  record holds (a price of 1e30, a timestamp in the year 3170843, JSON nested 300 deep); it will
  raise again on every retry. Retrying it forever stalls its customer and its partition's commits;
  crashing on it stops every worker that takes the partition over. Routed to ``error-events``
  with its reason and original bytes, it is seen, counted and can be redriven after a fix.
"""

from __future__ import annotations

import asyncio
import errno
import socket

import aiohttp
from redis.exceptions import RedisError

from wabridge.connectors import kafka, postgres
from wabridge.errors import PermanentError, TransientError

# Reasons are metric labels: a fixed set, whatever the exception.
UNEXPECTED_REASON = "unprocessable_record"

_UNREACHABLE: tuple[type[BaseException], ...] = (
    TimeoutError,
    asyncio.TimeoutError,
    ConnectionError,
    socket.gaierror,
    RedisError,
    aiohttp.ClientError,
)
# An OSError is the network's (or the machine's) only with one of these errnos, or with none (some
# libraries wrap several connection attempts in one). ``datetime.fromtimestamp(1e18)`` raises
# OSError EOVERFLOW: that one is the data's, and retrying it would stall its customer forever.
_TRANSIENT_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EHOSTUNREACH,
        errno.EHOSTDOWN, errno.ENETUNREACH, errno.ENETDOWN, errno.ENETRESET, errno.EPIPE, errno.ENOTCONN,
        errno.EADDRNOTAVAIL, errno.EAGAIN, errno.ENOBUFS, errno.EMFILE, errno.ENFILE, errno.ENOMEM,
    }
)  # fmt: skip


def _unreachable(exc: BaseException) -> bool:
    if isinstance(exc, _UNREACHABLE):
        return True
    return isinstance(exc, OSError) and (exc.errno is None or exc.errno in _TRANSIENT_ERRNOS)


def classify(exc: BaseException) -> TransientError | PermanentError:
    """``exc`` as the error that says what to do with it: retry (transient) or route (permanent)."""
    if isinstance(exc, TransientError | PermanentError):
        return exc
    for connector in (postgres.classify, kafka.classify):
        decided = connector(exc)
        if decided is not None:
            return decided
    if _unreachable(exc):
        return TransientError(f"dependency unreachable: {describe(exc)}", retry_after=1.0)
    return PermanentError(f"cannot process the record: {describe(exc)}", reason=UNEXPECTED_REASON)


def describe(exc: BaseException, limit: int = 500) -> str:
    """``Type: message`` on one line, bounded: for logs, headers and error records."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").replace("\r", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"
