"""Helpers of the stream tests: worker subprocesses, broker look-ups, polling."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.integration.edge_fixtures import free_port  # noqa: F401 - one port picker for the suite
from wabridge.connectors import kafka
from wabridge.settings import Settings

HERE = Path(__file__).parent
_log_numbers = itertools.count()


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes ``Settings()`` in a subprocess equal ``settings``."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"WABRIDGE_{name.upper()}"] = str(value)
    return env


@dataclass
class Worker:
    """A Faust worker subprocess running one of this folder's test apps."""

    script: str
    settings: Settings
    knobs: dict[str, str]
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def start(self) -> Worker:
        assert self.proc is None or self.proc.poll() is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("WABRIDGE_")}
        env.update(settings_env(self.settings))
        env.update(self.knobs)
        log = self.workdir / f"worker-{self.settings.worker_port}-{next(_log_numbers)}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(HERE / self.script)],
                cwd=self.workdir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.worker_port}"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait: a graceful stop."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join("\n".join(log.read_text(errors="replace").splitlines()[-lines:]) for log in self.logs)


def spawn(workers: list[Worker], script: str, settings: Settings, **knobs: str) -> Worker:
    workdir = settings.state_dir.parent
    workdir.mkdir(parents=True, exist_ok=True)
    worker = Worker(script, settings, knobs, workdir).start()
    workers.append(worker)
    return worker


async def committed_offsets(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """partition -> committed offset of ``group`` on ``topic`` (partitions without one left out).

    Partitions are named: Tansu answers an OffsetFetch for "all partitions" with a response
    aiokafka cannot decode.
    """
    admin = AIOKafkaAdminClient(**kafka.connection(settings))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(
            group, partitions=[TopicPartition(topic, p) for p in range(settings.kafka_partitions)]
        )
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def read_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)
