"""``wabridge run``: the bridge's processes in the foreground, stopped together by Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from wabridge.cli import _COMMANDS
from wabridge.dev.demo import DEMO_TENANT
from wabridge.settings import Settings

# component name -> `wabridge` arguments; a process is part of the stack once its command exists.
_PROCESS_COMMANDS: dict[str, list[str]] = {
    "sim_meta": ["sim", "meta"],
    "sim_genesys": ["sim", "genesys"],
    "webhook": ["webhook"],
    "bridge": ["bridge"],
    "worker": ["worker"],
}

PROCESSES_FILE = "processes.json"


def available_processes() -> dict[str, list[str]]:
    return {name: argv for name, argv in _PROCESS_COMMANDS.items() if argv[0] in _COMMANDS}


def running_processes(settings: Settings) -> list[str]:
    """The processes this product has; `dev status` reports each as healthy or not."""
    return list(available_processes())


def _record(settings: Settings, pids: dict[str, int]) -> None:
    path: Path = settings.state_dir / PROCESSES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(pids))


def run_foreground(settings: Settings, only: list[str] | None = None) -> int:
    """Start every available process, forward their output, stop them all on Ctrl-C or SIGTERM."""
    wanted = {n: a for n, a in available_processes().items() if only is None or n in only}
    # The simulators start knowing the demo tenant (its number, tokens, secrets and webhook URLs).
    for name, config in DEMO_TENANT.simulator_configs(settings).items():
        if name in wanted:
            path = settings.state_dir / f"{name}.json"
            path.write_bytes(orjson.dumps(config))
            path.chmod(0o600)
            wanted[name] = [*wanted[name], "--config", str(path)]
    children: dict[str, subprocess.Popen[bytes]] = {}
    for name, argv in wanted.items():
        children[name] = subprocess.Popen([sys.executable, "-m", "wabridge", *argv], env=os.environ.copy())
    _record(settings, {n: p.pid for n, p in children.items()})

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    try:
        while not stopping:
            for name, child in children.items():
                code = child.poll()
                if code is not None:
                    print(f"wabridge run: {name} exited with {code}; stopping the others", file=sys.stderr)
                    exit_code = code or 1
                    stopping = True
                    break
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        _record(settings, {})
    return exit_code
