"""WABRIDGE_LOG_FORMAT=json: every process writes one JSON object per line, Faust's lines included."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import orjson

from tests.integration.edge_fixtures import free_port, settings_env
from tests.streams.support import wait_until
from wabridge.settings import Settings

# Each process and the port of its /healthz.
PROCESSES = {"webhook": "webhook_ops_port", "bridge": "bridge_metrics_port", "worker": "worker_port"}
REQUIRED = {"time", "level", "process", "logger", "message"}


async def healthy(session: aiohttp.ClientSession, port: int) -> bool:
    try:
        async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


def start(name: str, env: dict[str, str], folder: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """``wabridge <name>`` with its stdout and stderr in files of ``folder``."""
    out, err = folder / f"{name}.out", folder / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "wabridge", name], env=env, cwd=folder, stdout=stdout, stderr=stderr
        )
    return process, out, err


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


async def test_every_process_logs_json_lines(provisioned: Settings, tmp_path: Path) -> None:
    settings = provisioned.model_copy(
        update={
            "log_format": "json",
            "kafka_idempotent": False,
            "state_dir": tmp_path / "state",
            **{field: free_port() for field in PROCESSES.values()},
        }
    )
    env = settings_env(settings)
    started: dict[str, tuple[subprocess.Popen[bytes], Path, Path]] = {}
    try:
        for name in PROCESSES:
            started[name] = start(name, env, tmp_path)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
            for name, field in PROCESSES.items():
                port = getattr(settings, field)
                await wait_until(lambda port=port: healthy(session, port), 90, f"{name} to answer /healthz")
        await asyncio.sleep(1)
    finally:
        stop([process for process, _, _ in started.values()])

    for name, (_, out, err) in started.items():
        lines = [line for line in err.read_text().splitlines() if line.strip()]
        assert lines, f"{name} wrote no log line"
        for line in lines:
            entry = orjson.loads(line)  # every line is JSON: nothing else on stderr
            assert set(entry) >= REQUIRED, (name, entry)
            assert entry["process"] == name
        assert out.read_text().strip() == "", f"{name} printed to stdout: {out.read_text()[:500]}"
        if name == "worker":
            assert any(orjson.loads(line)["logger"].startswith(("faust", "mode")) for line in lines)
