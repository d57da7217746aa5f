"""PostgreSQL: connection pools and versioned migrations.

Every pool pins ``search_path`` to ``Settings.postgres_schema`` so a deployment (or a test) lives
in its own schema without qualifying table names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from wabridge.errors import PermanentError, TransientError
from wabridge.settings import Settings

log = logging.getLogger(__name__)

# Serialises concurrent `migrate` runs (two processes starting at once) on one database.
_MIGRATION_LOCK_ID = 0x77616272  # "wabr"


# The statement or its arguments are wrong: the same write can never succeed. ``asyncpg.DataError`` is
# the server's class 22 (and the client's own "invalid input for query argument", e.g. an integer
# out of int64 range); the others are constraint violations and statements the server refuses.
_PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.SyntaxOrAccessError,
)
# Reaching the server, or the server's own state (restart, failover, too many connections,
# serialization failures, lock timeouts): the same write may succeed later.
# (Reaching it at all, OSError and timeouts, is decided with every other connector's in failures.)
# ``InternalClientError`` is a connection left mid-operation when the server died under it
# ("cannot switch to state 11; another operation (2) is in progress", seen on a server crash): the
# pool drops that connection on release and the next attempt gets a new one.
_TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.PostgresError,
)


def classify(exc: BaseException) -> TransientError | PermanentError | None:
    """The retry decision for a PostgreSQL failure (STYLE.md §5), made once, here.

    None when ``exc`` is not a PostgreSQL or connection failure (``errors.classify`` decides then).
    Encoding errors of the arguments (``ValueError``, ``OverflowError``) are not in this mapping:
    they are the data's fault wherever they arise, and ``errors.classify`` makes them permanent.
    """
    if isinstance(exc, _PERMANENT_ERRORS):
        return PermanentError(f"postgres rejected the write: {exc}", reason="postgres_rejected")
    if isinstance(exc, _TRANSIENT_ERRORS):
        return TransientError(f"postgres unavailable: {type(exc).__name__}: {exc}", retry_after=0.5)
    return None


@dataclass(frozen=True)
class Migration:
    version: str
    sql: str


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def available_migrations() -> list[Migration]:
    folder = resources.files("wabridge.connectors").joinpath("migrations")
    files = sorted((entry for entry in folder.iterdir() if entry.name.endswith(".sql")), key=lambda e: e.name)
    return [Migration(version=f.name.removesuffix(".sql"), sql=f.read_text("utf-8")) for f in files]


async def connect(settings: Settings, **pool_kwargs: object) -> asyncpg.Pool:
    """A pool whose connections see ``settings.postgres_schema`` first.

    Statements are planned for their actual arguments (``force_custom_plan``). asyncpg prepares
    every statement, and after five runs PostgreSQL may keep one generic plan for the
    connection's life. A generic plan made while ``message_tracking`` was still small joined the
    batch's ``unnest`` to it by a full scan. It kept doing that as the table grew: 91 scans of
    12k rows in a 10 s benchmark. The batch statements here run once per group commit, so
    planning each run costs little.
    """
    pool: asyncpg.Pool = await asyncpg.create_pool(
        settings.postgres_dsn.get_secret_value(),
        server_settings={"search_path": settings.postgres_schema, "plan_cache_mode": "force_custom_plan"},
        **pool_kwargs,
    )
    return pool


async def ensure_database(settings: Settings) -> bool:
    """Create the configured database if it does not exist (embedded stack). True when created."""
    dsn = settings.postgres_dsn.get_secret_value()
    parts = urlsplit(dsn)
    database = parts.path.lstrip("/")
    if not database:
        return False
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return False
    admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await admin.execute(f"CREATE DATABASE {_quote_ident(database)}")
    except asyncpg.DuplicateDatabaseError:
        return False
    finally:
        await admin.close()
    log.info("created database %s", database)
    return True


async def migrate(settings: Settings) -> list[str]:
    """Apply the migrations not yet recorded in ``schema_migrations``; return the versions applied."""
    schema = settings.postgres_schema
    conn = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
        try:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote_ident(schema)}")
            await conn.execute(f"SET search_path TO {_quote_ident(schema)}")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW())"
            )
            done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
            for migration in available_migrations():
                if migration.version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", migration.version)
                applied.append(migration.version)
                log.info("applied migration %s to schema %s", migration.version, schema)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
    finally:
        await conn.close()
    return applied


async def drop_schema(settings: Settings) -> None:
    """Remove a schema and everything in it (test clean-up)."""
    conn = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {_quote_ident(settings.postgres_schema)} CASCADE")
    finally:
        await conn.close()
