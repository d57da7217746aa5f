"""Which workers of the group are alive: a Redis key per worker, refreshed while it runs.

A consumer group's member list is not enough to tell: Tansu (the development broker) keeps a
stopped member in the group until another member joins, and on any broker a member only leaves
after its session times out when the process was killed. ``wabridge replay`` must not rewind
offsets under a running worker (its next commit would undo the rewind), so each worker announces
itself here every ``HEARTBEAT_S`` and removes its key on a clean stop; a killed worker's key
expires after ``TTL_S``.
"""

from __future__ import annotations

import os
import socket

import redis.asyncio as aioredis

from wabridge.connectors import redis_client
from wabridge.settings import Settings

HEARTBEAT_S = 2.0
TTL_S = 3 * HEARTBEAT_S


def _prefix(settings: Settings, group: str) -> str:
    return settings.redis_key(f"workers:{group}:")


def presence_key(settings: Settings, group: str, worker_url: str) -> str:
    return _prefix(settings, group) + worker_url


async def announce(redis: aioredis.Redis, settings: Settings, group: str, worker_url: str) -> None:
    """Mark this worker alive for ``TTL_S`` (called every ``HEARTBEAT_S``)."""
    value = f"{socket.gethostname()} pid {os.getpid()}"
    await redis.set(presence_key(settings, group, worker_url), value, ex=int(TTL_S) + 1)


async def withdraw(redis: aioredis.Redis, settings: Settings, group: str, worker_url: str) -> None:
    await redis.delete(presence_key(settings, group, worker_url))


async def live_workers(settings: Settings, group: str) -> dict[str, str]:
    """Worker URL -> "host pid N" of every worker of ``group`` that announced itself lately."""
    redis = redis_client.client(settings, timeout_s=5.0)
    prefix = _prefix(settings, group)
    try:
        found: dict[str, str] = {}
        async for key in redis.scan_iter(match=prefix + "*"):
            value = await redis.get(key)
            if value is not None:
                found[redis_client.text(key)[len(prefix) :]] = redis_client.text(value)
        return found
    finally:
        await redis.aclose()
