"""The media memory budget: downloads beyond it wait; a file larger than it still goes, alone."""

from __future__ import annotations

import asyncio

from wabridge.media import ByteBudget


async def test_reservations_beyond_the_budget_wait_for_room() -> None:
    budget = ByteBudget(100)
    order: list[str] = []
    first_done = asyncio.Event()

    async def download(name: str, size: int, hold: asyncio.Event | None = None) -> None:
        async with budget.reserve(size):
            order.append(f"{name} in")
            if hold is not None:
                await hold.wait()
        order.append(f"{name} out")

    first = asyncio.create_task(download("a", 70, first_done))
    await asyncio.sleep(0)
    second = asyncio.create_task(download("b", 50))
    await asyncio.sleep(0.05)
    assert order == ["a in"]  # b waits: 70 + 50 > 100
    assert budget.free == 30
    first_done.set()
    await asyncio.gather(first, second)
    assert order == ["a in", "a out", "b in", "b out"]
    assert budget.free == 100


async def test_a_file_larger_than_the_budget_is_taken_alone() -> None:
    budget = ByteBudget(100)
    async with budget.reserve(250):
        assert budget.free == 0
    assert budget.free == 100
