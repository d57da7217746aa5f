"""``wabridge healthcheck``: the container image's HEALTHCHECK, one command for every process.

The image runs as ``webhook``, ``bridge``, ``worker`` or a one-shot command (``provision``,
``tenants``, ...). The check reads which from the main process's command line (PID 1 in a
container) and asks that process's ``/healthz`` on its operations port, from the same settings
the process read: the edge's 3010, the bridge's 3011, a worker's web port. A one-shot command has
nothing to probe and is healthy while it runs. Exit status 0 healthy, 1 not (Docker's contract).
"""

from __future__ import annotations

import itertools
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path, PurePath

import click

from wabridge.settings import Settings

# The long-running commands and the port each answers /healthz on.
HEALTH_PORTS: dict[str, Callable[[Settings], int]] = {
    "webhook": lambda s: s.webhook_ops_port,
    "bridge": lambda s: s.bridge_metrics_port,
    "worker": lambda s: s.worker_port,
}
TIMEOUT_S = 3.0


def process_command(argv: Sequence[str]) -> str | None:
    """The long-running wabridge command a process runs, from its argv (``.../wabridge worker``,
    ``python -m wabridge worker``); None for a one-shot command or another program."""
    for program, command in itertools.pairwise(argv):
        if PurePath(program).name == "wabridge":
            return command if command in HEALTH_PORTS else None
    return None


def command_line(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


@click.command("healthcheck")
@click.option("--pid", type=int, default=1, show_default=True, help="The process to check (a container's main one).")
def healthcheck_command(pid: int) -> None:
    """Exit 0 when the process's /healthz answers 200 (the image's HEALTHCHECK)."""
    try:
        command = process_command(command_line(pid))
    except OSError as exc:
        click.echo(f"cannot read process {pid}'s command line: {exc}", err=True)
        sys.exit(1)
    if command is None:
        click.echo("a one-shot command: nothing to probe")
        return
    url = f"http://127.0.0.1:{HEALTH_PORTS[command](Settings())}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            click.echo(f"{command}: {url} answered {response.status}")
    except (urllib.error.URLError, OSError) as exc:
        click.echo(f"{command}: {url} did not answer: {exc}", err=True)
        sys.exit(1)
