"""The worker's background writers against a PostgreSQL that crashes under them.

A background task that raises stops the whole worker (``CrashingSupervisor``), so every one of
them must keep what it could not write and carry on once the server is back.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
from pydantic import SecretStr

from tests.services import OwnPostgres
from wabridge.agents.context import StageContext
from wabridge.connectors import postgres
from wabridge.settings import Settings
from wabridge.streams.app import create_app
from wabridge.tables.mirror import ActivityCoalescer


async def test_activity_writer_keeps_its_values_across_a_postgres_crash(
    own_postgres: OwnPostgres, isolated_settings: Settings
) -> None:
    settings = isolated_settings.model_copy(update={"postgres_dsn": SecretStr(own_postgres.dsn)})
    await postgres.ensure_database(settings)
    await postgres.migrate(settings)
    pool = await postgres.connect(settings)
    try:
        await pool.execute(
            "INSERT INTO conversation_mappings (tenant_id, customer_id, conversation_id) "
            "VALUES ('acme', '16505550100', gen_random_uuid())"
        )

        async def pool_factory() -> asyncpg.Pool:
            return pool

        writer = ActivityCoalescer(pool_factory)
        at = time.time()
        writer.touch("acme", "16505550100", at)

        # The pool's connections die with the server: the flush neither raises nor drops the value.
        await asyncio.to_thread(own_postgres.kill)
        assert await writer.flush() == 0
        assert writer.pending == 1

        await asyncio.to_thread(own_postgres.start)
        written = 0
        for _ in range(50):  # the pool replaces its dead connections on the next acquires
            written = await writer.flush()
            if written:
                break
            await asyncio.sleep(0.1)
        assert written == 1
        stamp = await pool.fetchval(
            "SELECT extract(epoch FROM last_activity_at) FROM conversation_mappings WHERE customer_id = '16505550100'"
        )
        assert abs(float(stamp) - at) < 0.001
    finally:
        await pool.close()


async def test_lanes_starting_together_share_one_sink_and_one_tenant_directory(provisioned: Settings) -> None:
    # A second sink made while the first lane awaited the pool was dropped with its task pending
    # ("Task was destroyed but it is pending!") and batched nothing with the others.
    ctx = StageContext(create_app(provisioned), provisioned)
    try:
        sinks = await asyncio.gather(*(ctx.sink() for _ in range(20)))
        directories = await asyncio.gather(*(ctx.directory() for _ in range(20)))
        assert len({id(sink) for sink in sinks}) == 1
        assert len({id(directory) for directory in directories}) == 1
    finally:
        await ctx.close()
