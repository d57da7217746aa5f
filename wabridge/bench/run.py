"""One benchmark run against the running stack, and ``--find-max``'s search over runs.

A run: check the edge and the Genesys simulator answer, get the tenants (and media) ready, set the
Genesys simulator's latency and rate limit, then send the plan open-loop while the Genesys arrivals
and the processes' CPU and memory are sampled; then drain (wait, up to a timeout, until every
accepted message has arrived), settle (a little longer, for late duplicates), and account.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from wabridge.bench.accounting import Accounting, Arrival, account
from wabridge.bench.genesys_sim import ArrivalWatch, GenesysKnobs
from wabridge.bench.latency import LatencyHistogram, LatencySummary
from wabridge.bench.load import Pacing, WebhookLoad, open_loop, wall_and_loop_clock
from wabridge.bench.plan import LoadShape, check_run_id, plan_messages, plan_posts, run_prefix
from wabridge.bench.processes import ProcessSampler, ProcessUsage
from wabridge.bench.report import Progress
from wabridge.bench.tenants import (
    BenchSetupError,
    BenchTenant,
    load_tenants,
    provision_bench_tenants,
    with_media,
)
from wabridge.settings import Settings

# Images stored at the Meta simulator per tenant; media messages take them in turn.
MEDIA_PER_TENANT = 20
POLL_INTERVAL_S = 0.5
# --find-max stops when the rate that failed is within this factor of the rate that held.
FIND_MAX_PRECISION = 1.1
FIND_MAX_STEPS = 12
FIND_MAX_COOLDOWN_S = 5.0


@dataclass(frozen=True)
class StackUrls:
    edge: str
    edge_ops: str  # the edge's /healthz, /readyz, /metrics
    genesys: str
    meta: str
    worker: str

    @classmethod
    def of(cls, settings: Settings) -> StackUrls:
        return cls(
            edge=f"http://{settings.webhook_host}:{settings.webhook_port}",
            edge_ops=f"http://{settings.webhook_ops_host}:{settings.webhook_ops_port}",
            genesys=f"http://{settings.sim_genesys_host}:{settings.sim_genesys_port}",
            meta=f"http://{settings.sim_meta_host}:{settings.sim_meta_port}",
            worker=f"http://{settings.worker_host}:{settings.worker_port}",
        )


@dataclass(frozen=True)
class BenchOptions:
    shape: LoadShape
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    # Existing tenants to send to, by id; empty: the demo tenant and shape.tenants - 1 bench tenants.
    tenant_ids: tuple[str, ...] = ()
    genesys_latency_ms: float | None = None
    # Per client and minute; 0 switches the simulator's limit off, None leaves it as it is.
    genesys_rate_limit: int | None = 0
    drain_timeout_s: float = 60.0
    settle_s: float = 2.0
    max_in_flight: int = 1000
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        check_run_id(self.run_id)
        if self.tenant_ids and len(self.tenant_ids) != self.shape.tenants:
            raise ValueError("shape.tenants must be the number of tenant ids given")


@dataclass(frozen=True)
class BenchResult:
    options: BenchOptions
    tenants: tuple[str, ...]
    posts: int
    duplicate_posts: int
    statuses: dict[str, int]
    ack: LatencySummary
    e2e: LatencySummary
    accounting: Accounting
    pacing: Pacing
    customer_waits: int
    send_phase_s: float
    drain_s: float
    drained: bool  # every accepted message had arrived before --drain-timeout ran out
    processes: dict[str, ProcessUsage]
    # webhooks: customers' messages, edge to Genesys; outbound: agents' messages, edge to Meta.
    mode: str = "webhooks"
    refused_by_meta: int = 0  # outbound: sends Meta accepted and then reported failed

    def held(self, e2e_p99_limit_ms: float) -> bool:
        """What ``--find-max`` asks of a rate: all accepted, nothing lost, e2e p99 within the limit."""
        counts = self.accounting
        return (
            counts.accepted == counts.sent
            and counts.lost == 0
            and counts.arrived > 0
            and self.e2e.p99_ms <= e2e_p99_limit_ms
        )


async def require_healthy(session: aiohttp.ClientSession, components: dict[str, str]) -> None:
    for name, url in components.items():
        try:
            async with session.get(f"{url}/healthz", timeout=aiohttp.ClientTimeout(total=3)) as response:
                problem = None if response.status == 200 else f"/healthz answered {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            problem = str(exc) or type(exc).__name__
        if problem is not None:
            raise BenchSetupError(f"the {name} at {url} is not healthy ({problem}): is `wabridge run` running?")


async def provision_or_load(
    settings: Settings, session: aiohttp.ClientSession, options: BenchOptions, urls: StackUrls
) -> list[BenchTenant]:
    if options.tenant_ids:
        tenants = await load_tenants(settings, options.tenant_ids)
    else:
        tenants = await provision_bench_tenants(settings, session, options.shape.tenants)
    if options.shape.media_share > 0:
        tenants = [await with_media(session, urls.meta, tenant, MEDIA_PER_TENANT) for tenant in tenants]
    return tenants


@dataclass(frozen=True)
class PreparedStack:
    session: aiohttp.ClientSession
    urls: StackUrls
    tenants: list[BenchTenant]


# The components a run may need, by their StackUrls field, as the health check names them, and
# the field of the URL that answers their /healthz.
_COMPONENT_NAMES = {"edge": "webhook edge", "genesys": "Genesys simulator", "meta": "Meta simulator"}
_HEALTH_URLS = {"edge": "edge_ops", "genesys": "genesys", "meta": "meta"}


@contextlib.asynccontextmanager
async def prepared_stack(
    settings: Settings, options: BenchOptions, needed: tuple[str, ...]
) -> AsyncIterator[PreparedStack]:
    """A session sized for the run, the ``needed`` components (StackUrls fields) checked healthy,
    the tenants ready, and the Genesys simulator's latency and rate limit set for the run (put
    back afterwards)."""
    urls = StackUrls.of(settings)
    connector = aiohttp.TCPConnector(limit=options.max_in_flight)
    async with aiohttp.ClientSession(connector=connector) as session:
        await require_healthy(session, {_COMPONENT_NAMES[f]: getattr(urls, _HEALTH_URLS[f]) for f in needed})
        tenants = await provision_or_load(settings, session, options, urls)
        knobs = GenesysKnobs(session, urls.genesys)
        try:
            await knobs.apply(
                latency_ms=options.genesys_latency_ms,
                rate_limit_per_minute=options.genesys_rate_limit,
                integration_ids=[tenant.integration_id for tenant in tenants],
            )
            yield PreparedStack(session, urls, tenants)
        finally:
            await knobs.restore()


async def run_webhook_bench(settings: Settings, options: BenchOptions, progress: Progress) -> BenchResult:
    needed: tuple[str, ...] = ("edge", "genesys")
    if options.shape.media_share > 0 or (options.shape.tenants > 1 and not options.tenant_ids):
        needed += ("meta",)
    async with prepared_stack(settings, options, needed) as stack:
        posts = plan_posts(plan_messages(options.run_id, options.shape), options.shape)
        watch = ArrivalWatch(stack.session, stack.urls.genesys, run_prefix(options.run_id))
        wall_start, start = wall_and_loop_clock()
        load = WebhookLoad(
            stack.session, f"{stack.urls.edge}/webhook/meta", stack.tenants, posts,
            wall_start=wall_start, timeout_s=options.timeout_s,
        )  # fmt: skip
        return await measure(settings, options, stack.tenants, progress, load, watch, start=start)


class Watch(Protocol):
    """Where the run's messages come out (Genesys for customers' messages, Meta for agents')."""

    arrivals: list[Arrival]
    seen: set[str]

    async def poll(self) -> int: ...


async def measure(
    settings: Settings,
    options: BenchOptions,
    tenants: list[BenchTenant],
    progress: Progress,
    load: WebhookLoad,
    watch: Watch,
    *,
    start: float,
    mode: str = "webhooks",
) -> BenchResult:
    """Send ``load``'s plan open-loop from ``start`` (loop clock) while ``watch`` reads what came out;
    drain, settle and account."""
    loop = asyncio.get_running_loop()
    shape = options.shape
    posts = load.posts
    sampler = ProcessSampler.for_stack(settings.state_dir)
    pacing = Pacing()
    where = "at Genesys" if mode == "webhooks" else "at Meta"
    observer = _Observer(watch, sampler, progress, load, pacing, duration_s=shape.duration_s, start=start, where=where)
    sampler.start()
    observing = asyncio.create_task(observer.run())
    try:
        await open_loop(load.offsets_s, load.launch, start=start, max_in_flight=options.max_in_flight, pacing=pacing)
        send_phase_s = loop.time() - start
        observer.phase = "draining"
        drain_start = loop.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(observer.drain_over.wait(), options.drain_timeout_s)
        drain_s = loop.time() - drain_start
        drained = load.accepted <= watch.seen
        observer.phase = "settling"
        if not observing.done():
            await asyncio.sleep(options.settle_s)
    finally:
        observer.stop()
        await observing
        progress.finish()
    await watch.poll()
    usage = sampler.finish()
    counts = account(load.sent_messages(), watch.arrivals)
    return BenchResult(
        options=options,
        tenants=tuple(tenant.tenant_id for tenant in tenants),
        posts=sum(1 for post in posts if not post.duplicate),
        duplicate_posts=load.duplicate_posts,
        statuses=dict(load.statuses),
        ack=load.ack.summary(),
        e2e=LatencyHistogram(counts.e2e_ms).summary(),
        accounting=counts,
        pacing=pacing,
        customer_waits=load.customer_waits,
        send_phase_s=send_phase_s,
        drain_s=drain_s,
        drained=drained,
        processes=usage,
        mode=mode,
    )


class _Observer:
    """Polls Genesys's arrivals, samples the processes and redraws the progress line until stopped."""

    def __init__(
        self,
        watch: Watch,
        sampler: ProcessSampler,
        progress: Progress,
        load: WebhookLoad,
        pacing: Pacing,
        *,
        duration_s: float,
        start: float,
        where: str,
    ) -> None:
        self._where = where
        self._watch = watch
        self._sampler = sampler
        self._progress = progress
        self._load = load
        self._pacing = pacing
        self._duration_s = duration_s
        self._start = start
        self._stopping = asyncio.Event()
        self.phase = "sending"
        # Set once sending is over and every accepted message has arrived, or when observing ends.
        self.drain_over = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        try:
            while not self._stopping.is_set():
                await self._watch.poll()
                self._sampler.sample()
                arrived = len(self._load.accepted & self._watch.seen)
                if self.phase != "sending" and arrived == len(self._load.accepted):
                    self.drain_over.set()
                self._progress.show(*self._describe(arrived))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), POLL_INTERVAL_S)
        finally:
            self.drain_over.set()

    def _describe(self, arrived: int) -> tuple[str, float, str]:
        load = self._load
        detail = (
            f"posts {load.posts_answered}/{load.post_count} · accepted {len(load.accepted)} · "
            f"{self._where} {arrived} · late {self._pacing.late}"
        )
        if self.phase == "sending":
            elapsed = asyncio.get_running_loop().time() - self._start
            return self.phase, elapsed / self._duration_s, detail
        return self.phase, arrived / max(1, len(load.accepted)), detail


@dataclass(frozen=True)
class FindMaxStep:
    result: BenchResult
    held: bool


@dataclass(frozen=True)
class FindMaxResult:
    max_rate: float | None
    steps: tuple[FindMaxStep, ...]
    hold_s: float
    e2e_p99_limit_ms: float


async def find_max(
    settings: Settings,
    options: BenchOptions,
    progress: Progress,
    *,
    hold_s: float,
    e2e_p99_limit_ms: float,
    on_step: Callable[[FindMaxStep], None],
) -> FindMaxResult:
    """Double the rate while it holds, then bisect between the best that held and the first that did not."""
    rate = options.shape.rate
    held: float | None = None
    failed: float | None = None
    steps = []
    for number in range(1, FIND_MAX_STEPS + 1):
        step_options = dataclasses.replace(
            options,
            shape=dataclasses.replace(options.shape, rate=rate, duration_s=hold_s),
            run_id=f"{options.run_id}s{number}",
        )
        result = await run_webhook_bench(settings, step_options, progress)
        step = FindMaxStep(result, result.held(e2e_p99_limit_ms))
        steps.append(step)
        on_step(step)
        if step.held:
            held = rate
        else:
            failed = rate
        if held is not None and failed is not None and failed <= held * FIND_MAX_PRECISION:
            break
        if failed is None:
            rate = rate * 2
        elif held is None:
            rate = rate / 2
        else:
            rate = (held + failed) / 2
        rate = float(max(1, round(rate)))
        if rate in (held, failed):
            break
        await asyncio.sleep(FIND_MAX_COOLDOWN_S)
    return FindMaxResult(max_rate=held, steps=tuple(steps), hold_s=hold_s, e2e_p99_limit_ms=e2e_p99_limit_ms)
