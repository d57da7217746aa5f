"""``wabridge migrate``."""

from __future__ import annotations

import asyncio

import click

from wabridge.connectors import postgres
from wabridge.settings import Settings


@click.command()
def migrate() -> None:
    """Apply the database migrations that are not applied yet (re-running is a no-op)."""
    settings = Settings()
    applied = asyncio.run(postgres.migrate(settings))
    if applied:
        click.echo("applied: " + ", ".join(applied))
    else:
        click.echo("database schema is up to date")
