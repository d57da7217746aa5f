"""`wabridge run` (what `make run` starts): every component healthy, and Ctrl-C stops it all."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.run_support import clean_up, isolated_run, wait_until_healthy
from wabridge.settings import Settings


@pytest.mark.slow
def test_run_brings_every_component_up_and_ctrl_c_stops_it(tmp_path: Path, stack_settings: Settings) -> None:
    own = isolated_run()
    run = subprocess.Popen(
        [sys.executable, "-m", "wabridge", "run"], cwd=tmp_path, env=own.env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        components = wait_until_healthy(tmp_path, own.env, timeout_s=90)
        assert {"kafka", "s3", "postgres", "redis", "rabbitmq", "webhook", "bridge", "sim_meta", "sim_genesys"} <= set(
            components
        )
        unhealthy = [n for n, c in components.items() if not c["healthy"]]
        assert unhealthy == []
    finally:
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=60) == 0
        asyncio.run(clean_up(own.settings))
