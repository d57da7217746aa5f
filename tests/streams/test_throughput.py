"""Rough cost of the lanes on Tansu, event by event vs ``take_events`` batches (printed, not asserted).

The handler does nothing, or only sends the event on: this is the ceiling of one stage in one worker on this machine.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from tests.streams.support import Worker, read_records, spawn, wait_until
from wabridge.settings import Settings
from wabridge.streams.app import declare_topics
from wabridge.streams.topics import WA_INBOUND

EVENTS = 20_000
KEYS = 500


@pytest.mark.parametrize("forward", [False, True], ids=["consume", "consume-and-send"])
@pytest.mark.parametrize("batch", [None, 500], ids=["per-event", "take_events-500"])
async def test_lane_throughput(
    settings: Settings,
    workers: list[Worker],
    producer: AIOKafkaProducer,
    tmp_path: Path,
    batch: int | None,
    forward: bool,
) -> None:
    settings = settings.model_copy(update={"kafka_topic_prefix": f"t{uuid.uuid4().hex[:10]}-"})
    await declare_topics(settings)
    topic = settings.topic(WA_INBOUND)
    futures = [
        await producer.send(topic, key=f"tenant{i % 5}:cust{i % KEYS}".encode(), value=json.dumps({"seq": i}).encode())
        for i in range(EVENTS)
    ]
    for future in futures:
        await future
    record = tmp_path / "summary.jsonl"
    knobs = {"LANES_RECORD": str(record), "LANES_COUNT_ONLY": "1", "LANES_EXPECT": str(EVENTS)}
    if batch:
        knobs["LANES_BATCH"] = str(batch)
    if forward:
        knobs["LANES_FORWARD"] = "1"
    spawn(workers, "lanes_app.py", settings, **knobs)
    summary = (await wait_until(lambda: read_records(record), 60, "all events handled"))[0]
    rate = EVENTS / summary["seconds"]
    mode = f"{'take_events(500)' if batch else 'per-event'}{' + send' if forward else ''}"
    print(f"\n{mode}: {EVENTS} events, {KEYS} keys in {summary['seconds']:.2f}s = {rate:,.0f}/s")
