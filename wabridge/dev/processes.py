"""``wabridge run``: the bridge's processes in the foreground, stopped together by Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson

from wabridge.cli import _COMMANDS
from wabridge.dev.demo import DEMO_TENANT
from wabridge.dev.stack import process_endpoints
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


async def _all_answer(urls: list[str]) -> bool:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
        for url in urls:
            try:
                async with session.get(url + "/healthz") as response:
                    if response.status != 200:
                        return False
            except (aiohttp.ClientError, TimeoutError):
                return False
    return True


def _ready_line() -> str:
    if "demo" not in _COMMANDS:
        return "wabridge run: everything is up"
    script = Path(sys.executable).with_name("wabridge")
    if script.is_relative_to(Path.cwd()):
        script = script.relative_to(Path.cwd())
    return f"wabridge run: everything is up. In another terminal, `{script} demo` sends a customer conversation"


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
    # The worker fetches agent attachments from the embedded Genesys simulator: plain http, loopback.
    env = os.environ.copy()
    simulator = f"http://{settings.sim_genesys_host}:{settings.sim_genesys_port}"
    env.setdefault("WABRIDGE_GENESYS_ATTACHMENT_INSECURE_ORIGINS", simulator)
    children: dict[str, subprocess.Popen[bytes]] = {}
    for name, argv in wanted.items():
        children[name] = subprocess.Popen([sys.executable, "-m", "wabridge", *argv], env=env)
    _record(settings, {n: p.pid for n, p in children.items()})

    # Said once every process answers /healthz, so the user knows when the demo can run.
    health_urls: list[str] | None = [process_endpoints(settings)[name] for name in children]
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    # Both, explicitly: a shell that starts `wabridge run` in the background without job control
    # leaves SIGINT ignored, and then Ctrl-C's signal would not stop anything.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
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
            if health_urls is not None and not stopping and asyncio.run(_all_answer(health_urls)):
                health_urls = None
                print(_ready_line(), flush=True)
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
