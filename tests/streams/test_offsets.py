"""Offsets with lanes: commits stay below the oldest unfinished event; a crash re-delivers it."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faust.transport.consumer import Consumer
from intervaltree import IntervalTree

from tests.streams.support import Worker, committed_offsets, read_records, spawn, wait_until
from wabridge.connectors import kafka
from wabridge.settings import Settings
from wabridge.streams.app import declare_topics
from wabridge.streams.topics import WA_INBOUND, WORKER_GROUP


def test_faust_commits_past_an_unacked_offset_when_acks_come_out_of_order() -> None:
    """Why lanes ack in offset order: Faust's own bookkeeping does not protect a slow event."""
    tp = ("topic", 0)

    def new_offset(committed: int | None, acked: list[int]) -> int | None:
        state = SimpleNamespace(
            _acked={tp: list(acked)},
            _acked_index={tp: set(acked)},
            _gap={tp: IntervalTree()},
            _committed_offset={tp: committed},
        )
        return Consumer._new_offset(state, tp)  # type: ignore[arg-type]

    # Committed 10 (next to read), 10 still running, 11 and 12 acked: Faust commits 13.
    assert new_offset(10, [11, 12]) == 13
    # Nothing committed yet, 0..4 running, 5..7 acked: Faust commits 8.
    assert new_offset(None, [5, 6, 7]) == 8
    # In-order acks, as lanes give them, commit exactly the finished prefix.
    assert new_offset(10, [10, 11]) == 12


async def produce(producer: AIOKafkaProducer, topic: str, keys: list[str], per_key: int) -> dict[int, int]:
    """Send ``per_key`` events per key (``seq`` in the value); return partition -> end offset."""
    futures = [
        await producer.send(topic, key=key.encode(), value=json.dumps({"seq": seq}).encode())
        for seq in range(per_key)
        for key in keys
    ]
    ends: dict[int, int] = defaultdict(int)
    for future in futures:
        metadata = await future
        ends[metadata.partition] = max(ends[metadata.partition], metadata.offset + 1)
    return dict(ends)


def done_offsets(records: list[dict]) -> set[tuple[int, int]]:
    return {(r["p"], r["o"]) for r in records if r["ev"] == "done"}


def assert_nothing_unfinished_below(committed: dict[int, int], done: set[tuple[int, int]]) -> None:
    for partition, offset in committed.items():
        missing = [o for o in range(offset) if (partition, o) not in done]
        assert not missing, f"partition {partition} committed {offset} with {missing} unfinished"


@pytest.mark.parametrize("batch", ["", "500"], ids=["per-event", "take_events-500"])
async def test_crash_with_unfinished_events_then_restart_processes_everything(
    settings: Settings, workers: list[Worker], producer: AIOKafkaProducer, tmp_path: Path, batch: str
) -> None:
    await declare_topics(settings)
    topic, group = settings.topic(WA_INBOUND), settings.topic(WORKER_GROUP)
    first_run, second_run = tmp_path / "run1.jsonl", tmp_path / "run2.jsonl"
    keys = [f"tenant{t}:cust{c}" for t in range(3) for c in range(10)]
    stuck = "tenant0:cust0"
    worker = spawn(
        workers, "lanes_app.py", settings,
        LANES_RECORD=str(first_run), LANES_SLEEP="0.005", LANES_SLOW=f"{stuck}=600", LANES_BATCH=batch,
    )  # fmt: skip
    per_key = 10
    ends = await produce(producer, topic, keys, per_key)
    total = sum(ends.values())

    # Everything but the stuck key's events gets done; its first event starts and never ends.
    def all_but_stuck_done() -> bool:
        records = read_records(first_run)
        return len(done_offsets(records)) == total - per_key and any(r["key"] == stuck for r in records)

    await wait_until(all_but_stuck_done, 45, "all but the stuck key done")
    records = read_records(first_run)
    stuck_partition, stuck_offset = next((r["p"], r["o"]) for r in records if r["key"] == stuck)

    # The other partitions commit to their end; the stuck one stays at or below the stuck event,
    # although later events of other keys in that partition are done.
    async def committed_by_partition() -> dict[int, int]:
        return await committed_offsets(settings, group, topic)

    async def others_committed() -> dict[int, int]:
        committed = await committed_by_partition()
        others = {p: end for p, end in ends.items() if p != stuck_partition}
        return committed if all(committed.get(p) == end for p, end in others.items()) else {}

    committed = await wait_until(others_committed, 20, "other partitions committed")
    assert committed.get(stuck_partition, 0) <= stuck_offset
    done_after_stuck = [o for p, o in done_offsets(records) if p == stuck_partition and o > stuck_offset]
    assert done_after_stuck, "no later event of the stuck partition ran concurrently"

    worker.kill()  # SIGKILL: no graceful commit
    committed = await committed_by_partition()
    assert_nothing_unfinished_below(committed, done_offsets(read_records(first_run)))
    assert committed.get(stuck_partition, 0) <= stuck_offset

    restarted = spawn(
        workers, "lanes_app.py", settings, LANES_RECORD=str(second_run), LANES_SLEEP="0", LANES_BATCH=batch
    )

    def all_done() -> bool:
        done = done_offsets(read_records(first_run)) | done_offsets(read_records(second_run))
        return len(done) == total

    try:
        await wait_until(all_done, 45, "every event done after the restart")
    except TimeoutError:
        print(restarted.log_tail())
        raise
    # The restart resumed from the committed offsets: it re-ran the stuck partition from the
    # stuck event on (at least once), in order per key, and nothing already committed.
    rerun = read_records(second_run)
    stuck_seqs = [r["seq"] for r in rerun if r["key"] == stuck and r["ev"] == "done"]
    assert stuck_seqs == list(range(per_key))
    assert all(r["o"] >= committed.get(r["p"], 0) for r in rerun)


async def test_a_raising_handler_stops_the_worker_without_acking(
    settings: Settings, workers: list[Worker], producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    await declare_topics(settings)
    topic, group = settings.topic(WA_INBOUND), settings.topic(WORKER_GROUP)
    first_run, second_run = tmp_path / "run1.jsonl", tmp_path / "run2.jsonl"
    keys = [f"tenant{t}:cust{c}" for t in range(2) for c in range(10)]
    buggy, bad_seq = "tenant1:cust3", 2
    worker = spawn(
        workers, "lanes_app.py", settings,
        LANES_RECORD=str(first_run), LANES_SLEEP="0.05", LANES_FAIL=f"{buggy}:{bad_seq}",
    )  # fmt: skip
    per_key = 6
    ends = await produce(producer, topic, keys, per_key)
    total = sum(ends.values())

    exit_code = await wait_until(lambda: worker.proc.poll(), 45, "the worker to stop")  # type: ignore[union-attr]
    print(f"\nworker exit code after the handler bug: {exit_code}")
    records = read_records(first_run)
    failed = next(r for r in records if r["key"] == buggy and r["seq"] == bad_seq)
    # The key's later events never started: its order holds.
    assert not [r for r in records if r["key"] == buggy and r["seq"] > bad_seq]
    committed = await committed_offsets(settings, group, topic)
    assert committed.get(failed["p"], 0) <= failed["o"]
    assert_nothing_unfinished_below(committed, done_offsets(records))

    spawn(workers, "lanes_app.py", settings, LANES_RECORD=str(second_run), LANES_SLEEP="0")

    def all_done() -> bool:
        done = done_offsets(read_records(first_run)) | done_offsets(read_records(second_run))
        return len(done) == total

    await wait_until(all_done, 45, "every event done after the restart")
    rerun = [r["seq"] for r in read_records(second_run) if r["key"] == buggy and r["ev"] == "done"]
    assert rerun == list(range(rerun[0], per_key)) and rerun[0] <= bad_seq


async def test_the_end_of_a_log_counts_every_record_of_its_last_batch(settings: Settings) -> None:
    """Table recovery and redrive read up to here: a record short, a worker served stale state."""
    topic = settings.topic("end-offsets")
    producer = AIOKafkaProducer(**kafka.connection(settings), linger_ms=50)
    await producer.start()
    try:
        # One batch of five records: sent together within the linger.
        sent = [await producer.send(topic, b"x", partition=0) for _ in range(5)]
        assert [(await future).offset for future in sent] == [0, 1, 2, 3, 4]
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(**kafka.connection(settings))
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        assert await kafka.end_offsets(consumer, [tp]) == {tp: 5}
    finally:
        await consumer.stop()
