"""The one CLI, ``wabridge <command>``. Commands load lazily so ``wabridge --help`` stays fast."""

from __future__ import annotations

import importlib

import click

# name -> "module:attribute" of a click command or group.
_COMMANDS: dict[str, str] = {
    "sim": "wabridge.simulators.cli:sim",
    "dev": "wabridge.dev.cli:dev",
    "run": "wabridge.dev.cli:run",
    "migrate": "wabridge.connectors.postgres_cli:migrate",
    "provision": "wabridge.dev.cli:provision",
    "tenants": "wabridge.tenants.cli:tenants",
    "webhook": "wabridge.commands:webhook",
    "bridge": "wabridge.commands:bridge",
    "worker": "wabridge.streams.worker:worker_command",
    "replay": "wabridge.replay:replay",
    "redrive": "wabridge.redrive:redrive",
    "bench": "wabridge.bench.cli:bench",
    "demo": "wabridge.dev.conversation:demo",
    "trace": "wabridge.trace:trace_command",
    "reingest": "wabridge.reingest:reingest_command",
    "healthcheck": "wabridge.healthcheck:healthcheck_command",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
        return command


@click.group(cls=_LazyGroup)
@click.version_option(package_name="wabridge")
def main() -> None:
    """WhatsApp <-> Genesys Cloud Open Messaging bridge."""
