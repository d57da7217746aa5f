"""Two worker processes in one group: partitions split, table_route answers for any key from
either worker, and after one stops the other serves every key with the table state intact."""

from __future__ import annotations

import json
from collections import Counter

import aiohttp
from aiokafka import AIOKafkaProducer

from tests.streams.support import Worker, free_port, spawn, wait_until
from wabridge.settings import Settings
from wabridge.streams import internal_auth
from wabridge.streams.app import declare_topics
from wabridge.streams.topics import WA_INBOUND

TENANT = "tenant7"
CUSTOMERS = [f"3161234{n:04d}" for n in range(40)]
PER_KEY = 3


async def get_seen(http: aiohttp.ClientSession, worker: Worker, customer: str) -> tuple[int, dict]:
    async with http.get(f"{worker.url}/seen/{customer}", params={"tenantId": TENANT}) as response:
        return response.status, await response.json(content_type=None)


async def all_keys_answered(http: aiohttp.ClientSession, worker: Worker) -> dict[str, dict]:
    """customer -> answer, when ``worker`` answered 200 with every event for every customer."""
    answers = {}
    for customer in CUSTOMERS:
        try:
            status, body = await get_seen(http, worker, customer)
        except aiohttp.ClientError:
            return {}
        if status != 200 or body["seen"] != list(range(PER_KEY)):
            return {}
        answers[customer] = body
    return answers


async def test_two_workers_route_by_key_and_survive_one_stopping(
    settings: Settings, workers: list[Worker], producer: AIOKafkaProducer
) -> None:
    await declare_topics(settings)
    first = spawn(workers, "twoworker_app.py", settings)
    second = spawn(workers, "twoworker_app.py", settings.model_copy(update={"worker_port": free_port()}))
    ports = {first.settings.worker_port, second.settings.worker_port}

    headers = internal_auth.authorization(settings)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), headers=headers) as http:

        async def both_own_partitions() -> bool:
            # Faust's /router/ view: worker URL -> the changelog partitions it owns.
            try:
                async with http.get(f"{first.url}/router/") as response:
                    routes = await response.json(content_type=None)
            except aiohttp.ClientError:
                return False
            owners = {url for url, topics in routes.items() if any(topics.values())}
            return len(owners) == 2

        try:
            await wait_until(both_own_partitions, 45, "both workers to own partitions", interval=0.5)
        except TimeoutError:
            print(first.log_tail(), second.log_tail())
            raise

        for seq in range(PER_KEY):
            for customer in CUSTOMERS:
                value = json.dumps({"seq": seq}).encode()
                await producer.send_and_wait(
                    settings.topic(WA_INBOUND), key=f"{TENANT}:{customer}".encode(), value=value
                )

        answers_first = await wait_until(lambda: all_keys_answered(http, first), 45, "all keys via worker 1")
        answers_second = await wait_until(lambda: all_keys_answered(http, second), 10, "all keys via worker 2")
        # Whichever worker was asked, each key was served by the same owner, and both own keys.
        owners = {c: a["served_by"] for c, a in answers_first.items()}
        assert owners == {c: a["served_by"] for c, a in answers_second.items()}
        spread = Counter(owners.values())
        print(f"\nkeys served per worker port: {dict(spread)}")
        assert set(spread) == ports

        # A POST is forwarded with its body.
        remote = next(c for c, port in owners.items() if port != first.settings.worker_port)
        async with http.post(
            f"{first.url}/seen/{remote}", params={"tenantId": TENANT}, json={"hello": "there"}
        ) as response:
            assert response.status == 200
            body = await response.json(content_type=None)
        assert body == {**body, "served_by": owners[remote], "echo": {"hello": "there"}}

        # Unknown key -> 404 from its owner; missing tenant -> 400 before any routing.
        status, _ = await get_seen(http, second, "nobody")
        assert status == 404
        async with http.get(f"{second.url}/seen/{remote}") as response:
            assert response.status == 400

        assert first.stop() == 0
        # After the rebalance the second worker owns every partition and recovered the first's
        # table partitions from the changelog.
        answers = await wait_until(lambda: all_keys_answered(http, second), 45, "worker 2 serving all")
        assert {a["served_by"] for a in answers.values()} == {second.settings.worker_port}
