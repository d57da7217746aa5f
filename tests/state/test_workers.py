"""Several workers, restarts and replays: state follows the partitions and nothing is done twice."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import aiohttp
import asyncpg
from aiokafka import AIOKafkaProducer

from tests.integration.edge_fixtures import free_port, settings_env
from tests.state.conftest import (
    TENANT,
    WorkerProcess,
    all_topic_names,
    committed_all,
    get_json,
    inbound_records,
    owns_partitions,
    produce,
    spawn,
)
from tests.streams.support import wait_until
from wabridge.connectors import kafka
from wabridge.settings import Settings
from wabridge.simulators.customer import InboundSpec, new_wamid
from wabridge.streams.topics import WA_INBOUND

CUSTOMERS = [f"3161234{n:04d}" for n in range(24)]


def messages(n: int = 1) -> list[tuple[str, bytes]]:
    specs = [InboundSpec(kind="text", wa_id=c, text=f"m{i}", wamid=new_wamid()) for i in range(n) for c in CUSTOMERS]
    return inbound_records(*specs)


async def answers(http: aiohttp.ClientSession, worker: WorkerProcess) -> dict[str, tuple[str, str]] | None:
    """customer -> (conversation id, serving worker) when ``worker`` answers every key from a table."""
    found = {}
    for customer in CUSTOMERS:
        status, body = await get_json(http, f"{worker.url}/state/tables/conversations/{TENANT}:{customer}")
        if status != 200:
            return None
        found[customer] = (body["value"]["conversation_id"], body["worker"])
    return found


async def pg_conversations(pg: asyncpg.Connection) -> dict[str, str]:
    rows = await pg.fetch("SELECT customer_id, conversation_id FROM conversation_mappings WHERE tenant_id = $1", TENANT)
    return {r["customer_id"]: str(r["conversation_id"]) for r in rows}


async def two_messages_each_done(
    settings: Settings,
    workers: list[WorkerProcess],
    producer: AIOKafkaProducer,
    http: aiohttp.ClientSession,
    pg: asyncpg.Connection,
) -> tuple[WorkerProcess, dict[str, str]]:
    """One worker; two messages from every customer, mapped, tracked and committed.

    Returns the worker and customer -> conversation id.
    """
    worker = spawn(workers, settings)
    await wait_until(lambda: owns_partitions(http, worker, 1), 45, "the worker to own its partitions")
    await produce(producer, settings, messages(2))
    before = await wait_until(lambda: answers(http, worker), 30, "every key mapped")
    conversations = await pg_conversations(pg)
    assert conversations == {c: conv for c, (conv, _) in before.items()}
    await wait_until(lambda: committed_all(settings, WA_INBOUND), 20, "wa-inbound fully committed")
    assert await pg.fetchval("SELECT count(*) FROM message_tracking") == 2 * len(CUSTOMERS)
    return worker, conversations


async def test_two_workers_route_and_take_over(
    state_settings: Settings,
    workers: list[WorkerProcess],
    clean_changelogs: None,
    producer: AIOKafkaProducer,
    http: aiohttp.ClientSession,
    pg: asyncpg.Connection,
) -> None:
    first = spawn(workers, state_settings)
    second = spawn(workers, state_settings.model_copy(update={"worker_port": free_port()}))
    try:
        await wait_until(lambda: owns_partitions(http, first, 2), 45, "both workers to own partitions", interval=0.5)
    except TimeoutError:
        print(first.tail(), second.tail())
        raise
    await produce(producer, state_settings, messages(2))

    via_first = await wait_until(lambda: answers(http, first), 30, "every key via worker 1")
    via_second = await wait_until(lambda: answers(http, second), 10, "every key via worker 2")
    assert via_first == via_second  # same owner and value whichever worker is asked
    assert len({served_by for _, served_by in via_first.values()}) == 2  # both own keys
    # The mapping API is routed too: ask each worker for every key.
    for worker in (first, second):
        for customer in CUSTOMERS:
            status, body = await get_json(http, f"{worker.url}/state/mapping/{customer}", tenantId=TENANT)
            assert status == 200 and body["conversationId"] == via_first[customer][0]
    assert await pg_conversations(pg) == {c: conv for c, (conv, _) in via_first.items()}
    # A create is answered by the key's owner too: for a known customer, the existing mapping.
    for worker in (first, second):
        for customer in CUSTOMERS:
            async with http.post(f"{worker.url}/state/mapping", json={"tenantId": TENANT, "waId": customer}) as resp:
                status, body = resp.status, await resp.json()
            conversation_id, owner = via_first[customer]
            answered = (status, body["conversationId"], body["created"], body["worker"])
            assert answered == (200, conversation_id, False, owner)

    second.stop()
    after = await wait_until(
        lambda: answers(http, first), 45, "worker 1 to serve every key after the rebalance", interval=0.5
    )
    assert {c: conv for c, (conv, _) in after.items()} == {c: conv for c, (conv, _) in via_first.items()}
    assert {served_by for _, served_by in after.values()} == {first.url}


async def test_restart_with_empty_broker_keeps_conversations(
    state_settings: Settings,
    workers: list[WorkerProcess],
    clean_changelogs: None,
    producer: AIOKafkaProducer,
    http: aiohttp.ClientSession,
    pg: asyncpg.Connection,
) -> None:
    settings = state_settings
    worker, conversations = await two_messages_each_done(settings, workers, producer, http, pg)

    # Restart with an empty broker: every topic of this test deleted and recreated.
    worker.stop()
    await kafka.delete_topics(settings, all_topic_names(settings))
    await kafka.ensure_topics(settings)
    worker.start()
    await wait_until(lambda: owns_partitions(http, worker, 1), 45, "the worker to start on the empty broker")
    await produce(producer, settings, messages(1))
    after = await wait_until(lambda: answers(http, worker), 30, "every key mapped again")
    assert {c: conv for c, (conv, _) in after.items()} == conversations  # from PostgreSQL, not new ones
    assert await pg_conversations(pg) == conversations
    assert await pg.fetchval("SELECT count(*) FROM message_tracking") == 3 * len(CUSTOMERS)


async def test_replay_from_earliest_changes_nothing(
    state_settings: Settings,
    workers: list[WorkerProcess],
    clean_changelogs: None,
    producer: AIOKafkaProducer,
    http: aiohttp.ClientSession,
    pg: asyncpg.Connection,
) -> None:
    settings = state_settings
    worker, conversations = await two_messages_each_done(settings, workers, producer, http, pg)

    replay = [sys.executable, "-m", "wabridge", "replay", "--topic", WA_INBOUND, "--to-earliest"]
    refused = await asyncio.to_thread(
        subprocess.run, replay, env=settings_env(settings), capture_output=True, text=True, timeout=90
    )
    assert refused.returncode != 0 and "running" in refused.stderr, refused.stderr

    # Replay wa-inbound from the start: nothing done is done again.
    worker.stop()
    done = await asyncio.to_thread(
        subprocess.run, replay, env=settings_env(settings), capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr
    moved = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(moved) == settings.kafka_partitions and all(line.endswith("-> 0") for line in moved), moved
    worker.start()
    await wait_until(lambda: owns_partitions(http, worker, 1), 45, "the worker to rejoin")
    await wait_until(lambda: committed_all(settings, WA_INBOUND), 30, "the replay to be processed")
    assert await pg_conversations(pg) == conversations
    assert await pg.fetchval("SELECT count(*) FROM message_tracking") == 2 * len(CUSTOMERS)
