"""``wabridge dev up | down | status``: the embedded default stack on loopback, idempotent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from wabridge.connectors import kafka, postgres, rabbitmq, s3
from wabridge.dev import services
from wabridge.dev.demo import DEMO_TENANT, seed_demo_tenant
from wabridge.errors import ConfigurationError
from wabridge.settings import DEV_ENV_FILE, Settings
from wabridge.streams.internal_auth import generate_token
from wabridge.tenants.crypto import generate_key

log = logging.getLogger(__name__)

STACK_FILE = "stack.json"


@dataclass
class StackState:
    """What ``dev up`` started, so that ``dev down`` stops exactly that."""

    daemons: dict[str, int] = field(default_factory=dict)  # component -> pid
    system: dict[str, dict[str, str]] = field(default_factory=dict)  # component -> how to stop

    @classmethod
    def load(cls, state_dir: Path) -> StackState:
        path = state_dir / STACK_FILE
        if not path.exists():
            return cls()
        data = orjson.loads(path.read_bytes())
        return cls(daemons=data.get("daemons", {}), system=data.get("system", {}))

    def save(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / STACK_FILE
        path.write_bytes(orjson.dumps({"daemons": self.daemons, "system": self.system}, option=orjson.OPT_INDENT_2))


def ensure_dev_env(env_file: Path = DEV_ENV_FILE) -> None:
    """Write the embedded stack's settings once: generated secrets, and Tansu's limits.

    A file written by an earlier version gets the secrets it lacks appended (its own stay).
    """
    if env_file.exists():
        present = env_file.read_text()
        if "WABRIDGE_INTERNAL_TOKEN=" not in present:
            with env_file.open("a") as out:
                out.write(f"WABRIDGE_INTERNAL_TOKEN={generate_token()}\n")
        return
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text(
        "# Written by `wabridge dev up` for the embedded development stack. Not for production.\n"
        f"WABRIDGE_SECRETS_KEY={generate_key()}\n"
        f"WABRIDGE_INTERNAL_TOKEN={generate_token()}\n"
        "# Tansu (the development broker) cannot do InitProducerId, so no idempotent producer.\n"
        "WABRIDGE_KAFKA_IDEMPOTENT=false\n"
        "# Tansu keeps a stopped worker in the group until its session times out, and a restarted\n"
        "# worker waits for that before it gets partitions: short timeouts make `make run` restarts quick.\n"
        "WABRIDGE_KAFKA_SESSION_TIMEOUT_S=10\n"
        "WABRIDGE_KAFKA_HEARTBEAT_INTERVAL_S=1\n"
        "WABRIDGE_KAFKA_REBALANCE_TIMEOUT_S=10\n"
    )
    env_file.chmod(0o600)


async def _wait_until(check: Callable[[], Awaitable[bool]], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.3)
    raise ConfigurationError(f"{what} did not become healthy within {timeout:.0f} s")


async def _ensure_daemon(
    name: str,
    settings: Settings,
    state: StackState,
    healthy: Callable[[], Awaitable[bool]],
    start: Callable[[Settings], int],
    url: str,
    default_port: int,
) -> str:
    if await healthy():
        return "running"
    if not services.loopback(url, default_port):
        raise ConfigurationError(f"{name} at {services.public_url(url)} does not answer, and it is not ours to start")
    old = state.daemons.get(name)
    if old and services.pid_alive(old):
        services.stop_pid(old)
    state.daemons[name] = start(settings)
    state.save(settings.state_dir)
    await _wait_until(healthy, name, timeout=30)
    return "started"


async def _ensure_system(
    name: str,
    settings: Settings,
    state: StackState,
    healthy: Callable[[], Awaitable[bool]],
    start: Callable[[Settings], dict[str, str]],
    url: str,
    default_port: int,
    timeout: float,
) -> str:
    if await healthy():
        return "running"
    if not services.loopback(url, default_port):
        raise ConfigurationError(f"{name} at {services.public_url(url)} does not answer, and it is not ours to start")
    how = await asyncio.to_thread(start, settings)
    state.system[name] = how
    state.save(settings.state_dir)
    await _wait_until(healthy, name, timeout=timeout)
    return "started"


async def up(settings: Settings) -> dict[str, str]:
    """Bring every component up and provision it. Safe to run again: it only fills what is missing."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    state = StackState.load(settings.state_dir)
    report: dict[str, str] = {}
    pg_url = settings.postgres_dsn.get_secret_value()
    rabbit_url = settings.rabbitmq_url.get_secret_value()

    report["postgres"] = await _ensure_system(
        "postgres", settings, state, lambda: services.postgres_healthy(settings, "postgres"),
        services.start_postgres, pg_url, 5432, timeout=60,
    )  # fmt: skip
    report["redis"] = await _ensure_system(
        "redis", settings, state, lambda: services.redis_healthy(settings),
        services.start_redis, settings.redis_url.get_secret_value(), 6379, timeout=30,
    )  # fmt: skip
    report["rabbitmq"] = await _ensure_system(
        "rabbitmq", settings, state, lambda: services.rabbitmq_healthy(settings),
        services.start_rabbitmq, rabbit_url, 5672, timeout=120,
    )  # fmt: skip
    report["kafka"] = await _ensure_daemon(
        "kafka", settings, state, lambda: services.kafka_healthy(settings),
        services.start_tansu, settings.kafka_bootstrap, 9092,
    )  # fmt: skip
    report["s3"] = await _ensure_daemon(
        "s3", settings, state, lambda: services.s3_healthy(settings),
        services.start_moto, settings.s3_endpoint, 9000,
    )  # fmt: skip

    await provision(settings)
    return report


async def provision(settings: Settings, *, demo_tenant: bool = True) -> None:
    """Database, migrations, topics, buckets, queues (and the demo tenant); each step idempotent."""
    await postgres.ensure_database(settings)
    await postgres.migrate(settings)
    await kafka.ensure_topics(settings)
    await s3.ensure_buckets(settings)
    await rabbitmq.ensure_topology(settings)
    if demo_tenant:
        await seed_demo_tenant(settings)


def down(settings: Settings) -> list[str]:
    """Stop what ``up`` started (daemons and system services), nothing else."""
    state = StackState.load(settings.state_dir)
    stopped = []
    for name, pid in list(state.daemons.items()):
        if services.pid_alive(pid):
            services.stop_pid(pid)
            stopped.append(name)
        del state.daemons[name]
    for name, how in list(state.system.items()):
        services.stop_system_service(how)
        stopped.append(name)
        del state.system[name]
    state.save(settings.state_dir)
    return stopped


# Processes that `wabridge run` supervises, and where each answers /healthz (the edge: its
# operations listener; its webhook port serves only /webhook/*).
def process_endpoints(settings: Settings) -> dict[str, str]:
    return {
        "webhook": f"http://{settings.webhook_ops_host}:{settings.webhook_ops_port}",
        "bridge": f"http://127.0.0.1:{settings.bridge_metrics_port}",
        "worker": f"http://{settings.worker_host}:{settings.worker_port}",
        "sim_meta": f"http://{settings.sim_meta_host}:{settings.sim_meta_port}",
        "sim_genesys": f"http://{settings.sim_genesys_host}:{settings.sim_genesys_port}",
    }


async def _http_healthy(url: str) -> bool:
    import aiohttp

    with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
            session.get(url + "/healthz") as response,
        ):
            return response.status == 200
    return False


async def status(settings: Settings) -> dict[str, Any]:
    pg_url = settings.postgres_dsn.get_secret_value()
    checks: dict[str, tuple[str, Awaitable[bool]]] = {
        "kafka": (f"kafka://{settings.kafka_bootstrap}", services.kafka_healthy(settings)),
        "s3": (settings.s3_endpoint, services.s3_healthy(settings)),
        "postgres": (services.public_url(pg_url), services.postgres_healthy(settings)),
        "redis": (services.public_url(settings.redis_url.get_secret_value()), services.redis_healthy(settings)),
        "rabbitmq": (
            services.public_url(settings.rabbitmq_url.get_secret_value()),
            services.rabbitmq_healthy(settings),
        ),
    }
    from wabridge.dev.processes import running_processes

    for name in running_processes(settings):
        url = process_endpoints(settings)[name]
        checks[name] = (url, _http_healthy(url))
    results = await asyncio.gather(*(check for _, check in checks.values()))
    components = {
        name: {"url": url, "healthy": healthy}
        for (name, (url, _)), healthy in zip(checks.items(), results, strict=True)
    }
    return {"components": components, "demo_tenant": DEMO_TENANT.as_status(settings)}
