"""Invariant 3 with the real broker: per-key order, a slow key does not stall the others."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from tests.streams.support import Worker, read_records, spawn, wait_until
from wabridge.settings import Settings
from wabridge.streams.app import declare_topics
from wabridge.streams.topics import WA_INBOUND


async def produce(producer: AIOKafkaProducer, topic: str, keys: list[str], per_key: int) -> int:
    futures = [
        await producer.send(topic, key=key.encode(), value=json.dumps({"seq": seq}).encode())
        for seq in range(per_key)
        for key in keys
    ]
    for future in futures:
        await future
    return len(futures)


def assert_sequential_per_key(records: list[dict]) -> None:
    """Per key: events start in sequence order and each starts only after the previous is done."""
    by_key: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_key[record["key"]].append(record)
    for key, events in by_key.items():
        starts = [r["seq"] for r in events if r["ev"] == "start"]
        assert starts == sorted(starts), f"{key} started out of order: {starts}"
        open_seq = None
        for record in events:  # file order is the order the one worker wrote them
            if record["ev"] == "start":
                assert open_seq is None, f"{key}: {record['seq']} started while {open_seq} ran"
                open_seq = record["seq"]
            else:
                assert record["seq"] == open_seq
                open_seq = None


@pytest.mark.parametrize("batch", ["", "500"], ids=["per-event", "take_events-500"])
async def test_order_per_key_and_slow_key_does_not_stall_others(
    settings: Settings, workers: list[Worker], producer: AIOKafkaProducer, tmp_path: Path, batch: str
) -> None:
    await declare_topics(settings)
    record = tmp_path / "records.jsonl"
    keys = [f"tenant{t}:cust{c}" for t in range(3) for c in range(20)]
    slow = "tenant0:cust0"
    per_key = 10
    worker = spawn(
        workers,
        "lanes_app.py",
        settings,
        LANES_RECORD=str(record),
        LANES_BATCH=batch,
        LANES_SLEEP="0.02",
        LANES_SLOW=f"{slow}=1.0",
    )
    total = await produce(producer, settings.topic(WA_INBOUND), keys, per_key)

    def done() -> list[dict]:
        records = read_records(record)
        return records if sum(r["ev"] == "done" for r in records) >= total else []

    try:
        records = await wait_until(done, 60, "every event done")
    except TimeoutError:
        print(worker.log_tail())
        raise
    assert_sequential_per_key(records)
    finished = {r["key"]: r["t"] for r in records if r["ev"] == "done"}  # last done per key
    slow_started = min(r["t"] for r in records if r["key"] == slow)
    others_last = max(t for key, t in finished.items() if key != slow)
    # The slow key needs per_key x 1 s; the 590 others, 10 x 20 ms each but concurrently.
    print(
        f"\nothers done {others_last - slow_started:.2f}s after the slow key started; "
        f"slow key done after {finished[slow] - slow_started:.2f}s"
    )
    assert finished[slow] - slow_started >= per_key * 1.0
    assert others_last - slow_started < per_key * 1.0 / 2
    # Keys sharing the slow key's partition finished early too: concurrency is within a partition.
    slow_partition = next(r["p"] for r in records if r["key"] == slow)
    neighbours = {r["key"] for r in records if r["p"] == slow_partition and r["key"] != slow}
    assert neighbours, "no other key shares the slow key's partition"
    assert max(finished[key] for key in neighbours) < finished[slow] - per_key * 1.0 / 2
