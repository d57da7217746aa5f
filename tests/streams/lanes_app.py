"""A one-stage worker for the lanes tests, run as a subprocess by conftest's ``spawn``.

Settings come from ``WABRIDGE_*`` like the product's; the test's knobs from ``LANES_*``:
``LANES_RECORD`` file that gets a JSON line when each event starts and is done;
``LANES_SLOW`` ``key=seconds,...`` handler time for those keys (others: ``LANES_SLEEP``);
``LANES_FAIL`` ``key:seq`` the handler raises on that event; ``LANES_BATCH`` read with
``take_events`` batches of that size; ``LANES_MAX_PENDING``; ``LANES_FORWARD`` also send each
event on to ``wa-ready``; ``LANES_COUNT_ONLY`` record only a summary line once
``LANES_EXPECT`` events are done (for the throughput measurement).
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from faust.types import EventT

from wabridge.settings import Settings
from wabridge.streams.app import create_app, run_worker, stage_topic
from wabridge.streams.lanes import run_in_lanes
from wabridge.streams.topics import WA_INBOUND, WA_READY

settings = Settings()
app = create_app(settings)
source = stage_topic(app, settings, WA_INBOUND)
sink = stage_topic(app, settings, WA_READY)

_record_fd = os.open(os.environ["LANES_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
_slow = {
    key: float(seconds)
    for key, _, seconds in (item.partition("=") for item in os.environ.get("LANES_SLOW", "").split(","))
    if key
}
_sleep = float(os.environ.get("LANES_SLEEP", "0"))
_fail = os.environ.get("LANES_FAIL", "")
_batch = int(os.environ["LANES_BATCH"]) if os.environ.get("LANES_BATCH") else None
_max_pending = int(os.environ.get("LANES_MAX_PENDING", "10000"))
_count_only = bool(os.environ.get("LANES_COUNT_ONLY"))
_forward = bool(os.environ.get("LANES_FORWARD"))
_expect = int(os.environ.get("LANES_EXPECT", "0"))
_progress = {"done": 0, "first": 0.0}


def _record(**fields: object) -> None:
    os.write(_record_fd, (json.dumps(fields) + "\n").encode())


async def handle(event: EventT) -> None:
    key = event.key
    seq = json.loads(event.value)["seq"]
    message = event.message
    if _count_only:
        if _forward:
            # Buffered in Faust's producer; flushed before every offset commit.
            await sink.send(key=key, value=event.value)
        if not _progress["done"]:
            _progress["first"] = time.monotonic()
        _progress["done"] += 1
        if _progress["done"] == _expect:
            _record(done=_expect, seconds=time.monotonic() - _progress["first"])
        return
    where = {"key": key, "seq": seq, "p": message.partition, "o": message.offset, "pid": os.getpid()}
    _record(ev="start", t=time.time(), **where)
    if f"{key}:{seq}" == _fail:
        raise RuntimeError(f"bug on {key}:{seq}")
    await asyncio.sleep(_slow.get(key, _sleep))
    _record(ev="done", t=time.time(), **where)


@app.agent(source, concurrency=1)
async def lanes_stage(stream):  # type: ignore[no-untyped-def]
    await run_in_lanes(stream, handle, max_pending=_max_pending, batch_size=_batch)


if __name__ == "__main__":
    run_worker(app, settings)
