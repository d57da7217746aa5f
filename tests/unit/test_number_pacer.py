"""The outbound stage's per-number pacing: Meta's 130429 pauses every send of that number, and only
of that number; sends are spaced under the number's throughput."""

from __future__ import annotations

import asyncio
import time

from wabridge.agents.outbound import NumberPacer


async def test_a_paused_number_waits_while_other_numbers_go_on() -> None:
    pacer = NumberPacer(per_second=1000)
    pacer.pause("acme-number", 0.3)
    finished: list[str] = []
    started = time.monotonic()

    async def send(number: str) -> None:
        await pacer.turn(number)
        finished.append(number)

    await asyncio.gather(send("acme-number"), send("globex-number"))
    assert finished == ["globex-number", "acme-number"]
    assert time.monotonic() - started >= 0.29


async def test_sends_of_one_number_are_spaced_under_its_throughput() -> None:
    pacer = NumberPacer(per_second=100)  # paced at 90 a second: 10 sends take at least 9 gaps of 1/90 s
    started = time.monotonic()
    for _ in range(10):
        await pacer.turn("acme-number")
    assert time.monotonic() - started >= 9 / 90 - 0.005
