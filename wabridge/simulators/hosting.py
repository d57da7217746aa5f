"""Run a simulator's aiohttp application on a loopback port, from pytest or from the CLI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from wabridge.errors import WabridgeError


@asynccontextmanager
async def serve_app(app: web.Application, host: str, port: int) -> AsyncIterator[str]:
    """Serve ``app`` and yield its base URL; ``port=0`` picks a free port."""
    # A short shutdown: requests held by a timeout fault must not stall teardown for a minute.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
        server = site._server  # aiohttp does not expose the bound port otherwise
        assert isinstance(server, asyncio.base_events.Server)
        bound_port = server.sockets[0].getsockname()[1]
        yield f"http://{host}:{bound_port}"
    finally:
        await runner.cleanup()


class BackgroundTasks:
    """Tasks a simulator starts after answering (status webhooks, attachment fetches).

    Kept referenced so they are not garbage-collected mid-flight, and cancelled on shutdown.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class SimulatorRequestError(WabridgeError):
    """A driver asked a running simulator for something it refused (bad tenant, bad payload)."""
