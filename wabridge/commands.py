"""``wabridge webhook`` and ``wabridge bridge``: the edge processes."""

from __future__ import annotations

import asyncio

import click

from wabridge.connectors.graph_versions import check_graph_version
from wabridge.observability import configure_logging
from wabridge.settings import Settings


@click.command()
@click.option("--host", help="Listen address (default: WABRIDGE_WEBHOOK_HOST)")
@click.option("--port", type=int, help="Listen port (default: WABRIDGE_WEBHOOK_PORT)")
def webhook(host: str | None, port: int | None) -> None:
    """The webhook edge: Meta and Genesys POST here."""
    from wabridge.connectors.webhook import serve_edge

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format, "webhook")
    check_graph_version(settings.meta_graph_version)
    asyncio.run(serve_edge(settings, host, port))


@click.command()
def bridge() -> None:
    """The RabbitMQ -> Kafka bridge connector."""
    from wabridge.connectors.bridge import serve_bridge

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format, "bridge")
    check_graph_version(settings.meta_graph_version)
    asyncio.run(serve_bridge(settings))
