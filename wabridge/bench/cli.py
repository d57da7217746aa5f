"""``wabridge bench``: load the running stack (``wabridge run``) and measure what a user would notice."""

from __future__ import annotations

import asyncio
import secrets
import sys

import aiohttp
import click
import orjson

from wabridge.bench.edge_load import run_edge_bench
from wabridge.bench.outbound import run_outbound_bench
from wabridge.bench.plan import LoadShape
from wabridge.bench.report import (
    Progress,
    edge_json,
    find_max_json,
    render_edge,
    render_find_max,
    render_result,
    render_state,
    render_step,
    result_json,
    state_json,
)
from wabridge.bench.run import BenchOptions, FindMaxStep, find_max, run_webhook_bench
from wabridge.bench.state_load import run_state_bench
from wabridge.bench.tenants import BenchSetupError
from wabridge.errors import ConfigurationError
from wabridge.settings import Settings

# Exit status of a run in which a message was lost, shown twice or out of order (scripts and CI).
EXIT_BROKEN_GUARANTEE = 3


@click.command()
@click.option(
    "--mode",
    type=click.Choice(["webhooks", "outbound", "edge", "state"]),
    default="webhooks",
    show_default=True,
    help=(
        "webhooks: signed Meta webhooks through the edge to Genesys; outbound: agents' messages (signed Genesys"
        " webhooks) through the edge to the Meta simulator; edge: the same Meta webhooks into the edge alone"
        " (`wabridge run --only webhook`), checked in the inbound queue; state: GET /state/mapping/… on the worker"
    ),
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=100.0,
    show_default=True,
    help="New messages (state: requests) per second, on the clock",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds of sending",
)
@click.option(
    "--customers",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Distinct WhatsApp customers, spread over the tenants",
)
@click.option(
    "--tenants",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="The demo tenant plus bench-2 .. bench-N, created (idempotently) where missing",
)
@click.option(
    "--tenant",
    "tenant_ids",
    multiple=True,
    help="Send to this existing tenant instead (repeatable; overrides --tenants)",
)
@click.option(
    "--media-share",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of messages that are images (stored at the Meta simulator)",
)
@click.option(
    "--duplicate-share",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of webhooks Meta delivers a second time, byte for byte",
)
@click.option(
    "--batch-size", type=click.IntRange(1, 1000), default=1, show_default=True, help="Messages per webhook POST"
)
@click.option(
    "--genesys-latency-ms",
    type=click.FloatRange(min=0),
    default=None,
    help="Latency the Genesys simulator adds to the tenants' inbound calls (default: as it is)",
)
@click.option(
    "--genesys-rate-limit",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Genesys simulator requests per minute per OAuth client, for the run; 0 = no limit",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds to wait after sending for accepted messages to reach Genesys",
)
@click.option(
    "--settle",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Seconds to keep watching Genesys after the drain, for late duplicates",
)
@click.option(
    "--max-in-flight",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Requests awaiting an answer at once; beyond it sends start late",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds a request may take before it counts as unanswered",
)
@click.option("--run-id", default=None, help="Names the run in every wamid (lowercase letters and digits)")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed for the choice of duplicate deliveries")
@click.option(
    "--find-max",
    "find_max_mode",
    is_flag=True,
    help="Search the highest rate held for --hold s with e2e p99 within the limit, nothing lost",
)
@click.option(
    "--hold",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="--find-max: seconds each rate is held",
)
@click.option(
    "--e2e-p99-limit-ms",
    type=click.FloatRange(min=0, min_open=True),
    default=1000.0,
    show_default=True,
    help="--find-max: the end-to-end p99 a rate must stay within",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object instead of a table")
def bench(
    mode: str,
    rate: float,
    duration: float,
    customers: int,
    tenants: int,
    tenant_ids: tuple[str, ...],
    media_share: float,
    duplicate_share: float,
    batch_size: int,
    genesys_latency_ms: float | None,
    genesys_rate_limit: int,
    drain_timeout: float,
    settle: float,
    max_in_flight: int,
    timeout: float,
    run_id: str | None,
    seed: int,
    find_max_mode: bool,
    hold: float,
    e2e_p99_limit_ms: float,
    as_json: bool,
) -> None:
    """Open-loop load on the running stack (`wabridge run`), measured end to end.

    Sends signed Meta webhooks to the edge at a fixed rate and reads back what reached the Genesys
    simulator: ack and end-to-end latency, throughput, lost, duplicated and out-of-order messages,
    and each process's CPU and peak memory. Run it from the directory `wabridge run` runs in.
    """
    if find_max_mode and mode != "webhooks":
        raise click.BadParameter(f"--find-max searches the pipeline's rate; it does not apply to --mode {mode}")
    settings = Settings()
    tenant_count = len(tenant_ids) or tenants
    try:
        shape = LoadShape(
            rate=rate,
            duration_s=duration,
            customers=customers,
            tenants=tenant_count,
            batch_size=batch_size,
            media_share=media_share,
            duplicate_share=duplicate_share,
            seed=seed,
        )
        options = BenchOptions(
            shape=shape,
            run_id=run_id or secrets.token_hex(4),
            tenant_ids=tenant_ids,
            genesys_latency_ms=genesys_latency_ms,
            genesys_rate_limit=genesys_rate_limit,
            drain_timeout_s=drain_timeout,
            settle_s=settle,
            max_in_flight=max_in_flight,
            timeout_s=timeout,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    progress = Progress()
    try:
        if mode == "state":
            state = asyncio.run(
                run_state_bench(
                    settings, shape, progress, tenant_ids=tenant_ids, max_in_flight=max_in_flight, timeout_s=timeout
                )
            )
            click.echo(orjson.dumps(state_json(state)).decode() if as_json else render_state(state))
        elif mode == "edge":
            edge = asyncio.run(
                run_edge_bench(
                    settings,
                    shape,
                    progress,
                    run_id=options.run_id,
                    tenant_ids=tenant_ids,
                    max_in_flight=max_in_flight,
                    timeout_s=timeout,
                )
            )
            click.echo(orjson.dumps(edge_json(edge)).decode() if as_json else render_edge(edge))
        elif find_max_mode:

            def announce(step: FindMaxStep) -> None:
                click.echo(render_step(step), err=True)

            found = asyncio.run(
                find_max(settings, options, progress, hold_s=hold, e2e_p99_limit_ms=e2e_p99_limit_ms, on_step=announce)
            )
            click.echo(orjson.dumps(find_max_json(found)).decode() if as_json else render_find_max(found))
        else:
            runner = run_outbound_bench if mode == "outbound" else run_webhook_bench
            result = asyncio.run(runner(settings, options, progress))
            click.echo(orjson.dumps(result_json(result)).decode() if as_json else render_result(result))
            counts = result.accounting
            if counts.lost or counts.duplicates or counts.out_of_order:
                click.echo(
                    f"the run lost {counts.lost}, duplicated {counts.duplicates} and reordered "
                    f"{counts.out_of_order} messages (exit {EXIT_BROKEN_GUARANTEE})",
                    err=True,
                )
                sys.exit(EXIT_BROKEN_GUARANTEE)
    except (BenchSetupError, ConfigurationError) as exc:
        raise click.ClickException(str(exc)) from exc
    except aiohttp.ClientError as exc:
        raise click.ClickException(f"a component of the stack stopped answering during the run: {exc!r}") from exc
    except KeyboardInterrupt:
        click.echo("\ninterrupted", err=True)
        sys.exit(130)
