"""The worker process (``wabridge worker``): the Faust app with its stage agents, tables and views.

``build_worker`` assembles it from the one settings object; ``run_worker`` (``streams.app``)
creates the topics and runs it. More workers with the same settings join the same consumer group
and split the partitions; the State API answers from whichever worker owns a key.
"""

from __future__ import annotations

import logging

import click
import faust
from redis.exceptions import RedisError

from wabridge.agents.context import StageContext
from wabridge.agents.deliver import register_deliver
from wabridge.agents.genesys_events import register_genesys_events
from wabridge.agents.outbound import register_outbound
from wabridge.agents.prepare import register_prepare
from wabridge.connectors.genesys import GenesysAuth, GenesysClient
from wabridge.connectors.graph_versions import check_graph_version
from wabridge.settings import Settings
from wabridge.streams import metrics, presence
from wabridge.streams.app import create_app, run_worker, worker_url
from wabridge.streams.auth_api import register_auth_api
from wabridge.streams.state_api import register_state_api

log = logging.getLogger(__name__)

# How often coalesced ``last_activity_at`` values reach PostgreSQL.
ACTIVITY_FLUSH_INTERVAL_S = 1.0


def build_worker(settings: Settings) -> faust.App:
    """The workers' Faust app: every inbound stage, Genesys's events, the State and auth APIs."""
    app = create_app(settings)
    metrics.install(app)
    ctx = StageContext(app, settings)
    prepare = register_prepare(app, ctx)
    conversations = prepare.conversations
    auth = GenesysAuth(ctx.redis, ctx.box, settings)
    genesys = GenesysClient(auth)
    register_deliver(app, ctx, genesys, conversations)
    outbound = register_outbound(app, ctx, genesys, conversations)
    register_genesys_events(app, ctx)
    register_state_api(app, ctx, conversations)
    register_auth_api(app, auth, ctx.directory)

    @app.timer(ACTIVITY_FLUSH_INTERVAL_S)  # type: ignore[untyped-decorator]  # Faust's decorators are untyped
    async def flush_activity() -> None:
        written = await ctx.activity.flush()
        if written:
            log.debug("last_activity_at of %d mappings written", written)

    @app.task  # type: ignore[untyped-decorator]
    async def warn_of_graph_version_end() -> None:
        # Once, with the worker's logging in place.
        check_graph_version(settings.meta_graph_version)

    @app.task  # type: ignore[untyped-decorator]
    async def announce_presence() -> None:
        # Lets `wabridge replay` refuse while this worker runs (see streams.presence).
        url = worker_url(settings)
        while not app.should_stop:
            try:
                await presence.announce(ctx.redis, settings, app.conf.id, url)
            except RedisError as exc:
                log.warning("could not announce this worker in Redis (replay cannot see it): %s", exc)
            await app.sleep(presence.HEARTBEAT_S)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode types the receiver as taking signal=
    async def close_context(sender: faust.App, **_: object) -> None:
        try:
            await presence.withdraw(ctx.redis, settings, app.conf.id, worker_url(settings))
        except RedisError as exc:
            log.warning("could not withdraw this worker from Redis (its entry expires by itself): %s", exc)
        await prepare.close()
        await outbound.close()
        await genesys.close()
        await auth.close()
        await ctx.close()

    return app


@click.command("worker")
def worker_command() -> None:
    """Run a stream worker: every pipeline stage, the State API and /auth/token (Faust web, port 3005)."""
    settings = Settings()
    run_worker(build_worker(settings), settings)
