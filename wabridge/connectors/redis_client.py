"""Redis, the cache (ARCHITECTURE.md, Storage): how every process builds its client, and reads a value.

Timeouts are short: Redis is a cache, and when it is down the caller falls back (PostgreSQL, no
rate limit) instead of waiting. ``redis-py`` types what it returns as ``bytes | str`` (it depends on
``decode_responses``); :func:`text` reads either.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from wabridge.settings import Settings

TIMEOUT_S = 2.0


def client(settings: Settings, *, timeout_s: float = TIMEOUT_S) -> aioredis.Redis:
    """A client of the deployment's Redis (``Settings.redis_url``)."""
    url = settings.redis_url.get_secret_value()
    return aioredis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


def text(value: bytes | str) -> str:
    """A key or value read from Redis, as text."""
    return value.decode() if isinstance(value, bytes) else value
