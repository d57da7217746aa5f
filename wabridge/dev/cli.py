"""``wabridge dev up | down | status`` and ``wabridge run``."""

from __future__ import annotations

import asyncio
import logging
import sys

import click
import orjson

from wabridge.dev import stack
from wabridge.dev.processes import available_processes, run_foreground
from wabridge.errors import ConfigurationError
from wabridge.settings import Settings


def _settings_after_env() -> Settings:
    stack.ensure_dev_env()
    return Settings()


def _up(settings: Settings) -> dict[str, str]:
    try:
        return asyncio.run(stack.up(settings))
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def dev() -> None:
    """The embedded development stack (Tansu, moto S3, PostgreSQL, Redis, RabbitMQ) on loopback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


@dev.command("up")
def dev_up() -> None:
    """Start what is missing, then create the database, topics, buckets, queues and demo tenant."""
    report = _up(_settings_after_env())
    for name, outcome in report.items():
        click.echo(f"{name:10} {outcome}")
    click.echo("stack ready; `wabridge dev status` shows the details")


@dev.command("down")
def dev_down() -> None:
    """Stop what `dev up` started, and nothing else."""
    stopped = stack.down(Settings())
    click.echo("stopped: " + (", ".join(stopped) if stopped else "nothing (nothing was started by dev up)"))


@dev.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts")
def dev_status(as_json: bool) -> None:
    """Every component's URL and health, and the demo tenant's development credentials."""
    report = asyncio.run(stack.status(Settings()))
    if as_json:
        click.echo(orjson.dumps(report).decode())
    else:
        for name, component in report["components"].items():
            mark = "healthy" if component["healthy"] else "DOWN"
            click.echo(f"{name:12} {mark:8} {component['url']}")
        click.echo("demo tenant:")
        for key, value in report["demo_tenant"].items():
            click.echo(f"  {key:24} {value}")
    if not all(c["healthy"] for c in report["components"].values()):
        sys.exit(1)


@click.command()
def provision() -> None:
    """Create the database schema, topics, buckets and queues of a deployment (no demo tenant)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(stack.provision(Settings(), demo_tenant=False))
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("provisioned: database schema, topics, buckets, queues")


@click.command()
@click.option(
    "--only",
    "only",
    multiple=True,
    type=click.Choice(list(available_processes())),
    help="Run only this process (repeatable), e.g. `--only webhook` for `wabridge bench --mode edge`",
)
def run(only: tuple[str, ...]) -> None:
    """Bring the embedded stack up and run the bridge's processes in the foreground (Ctrl-C stops)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = _settings_after_env()
    _up(settings)
    click.echo("embedded stack is up; starting the bridge's processes (Ctrl-C stops them)")
    sys.exit(run_foreground(settings, list(only) or None))
