"""A seeded chaos soak: steady load from two tenants while the edge, the bridge and the worker are
SIGKILLed and restarted at random, and RabbitMQ, Redis and PostgreSQL (instances of the test's
own) are crashed and started again. Every webhook Meta was told is safe reaches the agent, in each
customer's order, and every duplicate is one the worker knew it might send (an attempt whose
answer died with its process, counted in ``message_tracking.delivery_attempts``).

``WABRIDGE_CHAOS_SEED`` replays a run; ``WABRIDGE_CHAOS_SECONDS`` makes it longer by hand.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter, defaultdict

import pytest
from pydantic import SecretStr

from tests.pipeline.conftest import ACME, GLOBEX, BridgeTenant, Pipeline, pg_rows
from tests.services import OwnPostgres, OwnRabbitMQ, OwnRedis
from wabridge.connectors import postgres, rabbitmq
from wabridge.settings import Settings
from wabridge.simulators.customer import InboundSpec

SEED = int(os.environ.get("WABRIDGE_CHAOS_SEED", "20261202"))
SECONDS = float(os.environ.get("WABRIDGE_CHAOS_SECONDS", "60"))
MESSAGES_PER_SECOND = 10.0
CUSTOMERS = {ACME: [f"1650555{2000 + i}" for i in range(14)], GLOBEX: [f"1650555{3000 + i}" for i in range(6)]}
VICTIMS = ("worker", "bridge", "webhook", "rabbitmq", "redis", "postgres")


@pytest.fixture
async def pipeline_settings(
    pipeline_settings: Settings, own_rabbitmq: OwnRabbitMQ, own_redis: OwnRedis, own_postgres: OwnPostgres
) -> Settings:
    """The pipeline's settings on a RabbitMQ, a Redis and a PostgreSQL of this test's own, which it may crash."""
    settings = pipeline_settings.model_copy(
        update={
            "rabbitmq_url": SecretStr(own_rabbitmq.url),
            "redis_url": SecretStr(own_redis.url),
            "postgres_dsn": SecretStr(own_postgres.dsn),
        }
    )
    await rabbitmq.ensure_topology(settings)
    await postgres.ensure_database(settings)
    await postgres.migrate(settings)
    return settings


class Services:
    """What the chaos may crash besides the processes."""

    def __init__(self, *servers: tuple[str, OwnRabbitMQ | OwnRedis | OwnPostgres]) -> None:
        self.servers = dict(servers)


async def customer_writes(
    pipeline: Pipeline, tenant: BridgeTenant, customer: str, until: float, sent: list[tuple[str, str, bool]]
) -> None:
    """One customer writing at a steady pace; records (customer, wamid, acked by the edge)."""
    interval = sum(len(c) for c in CUSTOMERS.values()) / MESSAGES_PER_SECOND
    n = 0
    while time.monotonic() < until:
        result = await pipeline.customers.send(
            tenant.phone_number_id, [InboundSpec(kind="text", wa_id=customer, text=f"{customer} #{n}")]
        )
        [wamid] = result["wamids"]
        [attempts] = result["posts"]
        sent.append((customer, str(wamid), bool(attempts) and attempts[-1] == 200))
        n += 1
        await asyncio.sleep(interval)


async def chaos(pipeline: Pipeline, services: Services, rng: random.Random, until: float, log: list[str]) -> None:
    """SIGKILL a process or a service every 6-10 s, each in turn in a shuffled order, and restart it."""
    began = time.monotonic()
    order: list[str] = []
    while True:
        await asyncio.sleep(rng.uniform(6.0, 10.0))
        if time.monotonic() >= until:
            return
        if not order:
            order = rng.sample(VICTIMS, len(VICTIMS))
        victim = order.pop()
        down_s = rng.uniform(0.0, 2.0)
        log.append(f"{time.monotonic() - began:.1f} s: SIGKILL {victim}, down {down_s:.1f} s")
        if victim in services.servers:
            server = services.servers[victim]
            await asyncio.to_thread(server.kill)
            await asyncio.sleep(down_s)
            await asyncio.to_thread(server.start)
        else:
            process = pipeline.processes[victim]
            process.kill()
            await asyncio.sleep(down_s)
            process.start()


@pytest.mark.slow
@pytest.mark.timeout(SECONDS + 300)
async def test_chaos_soak_loses_nothing_and_accounts_for_every_duplicate(
    pipeline: Pipeline, own_rabbitmq: OwnRabbitMQ, own_redis: OwnRedis, own_postgres: OwnPostgres
) -> None:
    # Meta retries for days; here long enough to outlast a RabbitMQ restart (about 7 s).
    pipeline.meta.update(webhook_retries=60, webhook_retry_delay_s=0.5)
    services = Services(("rabbitmq", own_rabbitmq), ("redis", own_redis), ("postgres", own_postgres))
    rng = random.Random(SEED)
    until = time.monotonic() + SECONDS
    sent: dict[BridgeTenant, list[tuple[str, str, bool]]] = {ACME: [], GLOBEX: []}
    faults: list[str] = []
    writers = [
        customer_writes(pipeline, tenant, customer, until, sent[tenant])
        for tenant, customers in CUSTOMERS.items()
        for customer in customers
    ]
    await asyncio.gather(chaos(pipeline, services, rng, until, faults), *writers)
    replay = f"seed {SEED}, {SECONDS:.0f} s; faults: {faults}"

    for tenant in CUSTOMERS:
        acked = [wamid for _, wamid, ok in sent[tenant] if ok]
        try:
            await pipeline.wait_arrived(tenant, acked, timeout_s=240)
        except AssertionError as exc:
            raise AssertionError(f"{replay}: {exc}") from None

    duplicates = 0
    for tenant in CUSTOMERS:
        arrivals = pipeline.arrived_ids(tenant)
        acked = {wamid for _, wamid, ok in sent[tenant] if ok}
        assert acked <= set(arrivals), f"lost {sorted(acked - set(arrivals))[:5]} ({replay})"
        # Per customer, first arrivals in the order the customer wrote (what the edge acked).
        firsts: dict[str, list[str]] = defaultdict(list)
        seen: set[str] = set()
        for accepted in pipeline.arrived(tenant):
            wamid = accepted.body["channel"]["messageId"]
            if wamid not in seen:
                seen.add(wamid)
                firsts[accepted.body["channel"]["from"]["id"]].append(wamid)
        for customer in CUSTOMERS[tenant]:
            written = [w for c, w, _ in sent[tenant] if c == customer and w in seen]
            assert firsts[customer] == written, f"customer {customer} out of order ({replay})"
        duplicates += sum(count - 1 for count in Counter(arrivals).values())

    rows = await pg_rows(
        pipeline.settings, "SELECT COALESCE(SUM(delivery_attempts - 1), 0) AS resends FROM message_tracking"
    )
    resends = int(rows[0]["resends"])
    assert duplicates <= resends, f"{duplicates} duplicates at Genesys, {resends} known resends ({replay})"
    assert faults, "no fault was injected"
    print(f"chaos soak: {sum(len(s) for s in sent.values())} sent, {duplicates} duplicates, {replay}")
