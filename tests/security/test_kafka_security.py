"""Secured brokers: every Kafka client the project makes connects with the settings' TLS and SASL.

TLS is tried against a real TLS listener: a TLS-terminating proxy in front of a broker of this test's
own, which advertises the proxy, so every connection a client opens (bootstrap, then the broker it
is told about) is a TLS handshake verified against the test's certificate authority.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError
from pydantic import SecretStr

from tests.integration.edge_fixtures import free_port
from tests.services import OwnTansu, TcpProxy, TlsFiles, make_tls_files
from tests.state.conftest import TENANT, WorkerProcess, get_json, inbound_records, spawn_ready
from tests.streams.support import wait_until
from wabridge.connectors import kafka
from wabridge.errors import ConfigurationError
from wabridge.settings import Settings
from wabridge.simulators.customer import InboundSpec
from wabridge.streams.topics import WA_INBOUND


@dataclass(frozen=True)
class TlsBroker:
    bootstrap: str
    files: TlsFiles


@pytest.fixture
async def tls_broker(tmp_path: Path) -> AsyncIterator[TlsBroker]:
    files = make_tls_files(tmp_path)
    listener = free_port()
    broker = OwnTansu(tmp_path / "tansu.log", advertised_port=listener)
    broker.start()
    proxy = TcpProxy(broker.port, port=listener, tls=files.server_context())
    await proxy.start()
    try:
        yield TlsBroker(f"127.0.0.1:{listener}", files)
    finally:
        await proxy.cut()
        broker.kill()


def over_tls(settings: Settings, broker: TlsBroker, **changes: object) -> Settings:
    values = {
        "kafka_bootstrap": broker.bootstrap,
        "kafka_security_protocol": "SSL",
        "kafka_ssl_cafile": broker.files.ca,
        **changes,
    }
    return settings.model_copy(update=values)


async def connects(settings: Settings) -> bool:
    producer = AIOKafkaProducer(**kafka.connection(settings), request_timeout_ms=3000)
    try:
        await producer.start()
    except KafkaConnectionError:
        return False
    finally:
        await producer.stop()
    return True


async def test_a_client_is_refused_without_tls_or_the_right_authority_and_accepted_with_them(
    isolated_settings: Settings, tls_broker: TlsBroker
) -> None:
    settings = over_tls(isolated_settings, tls_broker)
    assert not await connects(settings.model_copy(update={"kafka_security_protocol": "PLAINTEXT"}))
    # The system's trust store does not know the broker's authority: no connection.
    assert not await connects(settings.model_copy(update={"kafka_ssl_cafile": None}))

    # With the settings: topics declared (admin), a record produced and read back.
    await kafka.ensure_topics(settings)
    topic = settings.topic(WA_INBOUND)
    producer = AIOKafkaProducer(**kafka.connection(settings), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"over tls", key=b"acme:1", partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(**kafka.connection(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        batch = await consumer.getmany(partition, timeout_ms=10_000)
        assert [r.value for r in batch[partition]] == [b"over tls"]
    finally:
        await consumer.stop()


async def test_a_worker_reads_and_writes_its_topics_over_tls(
    state_settings: Settings,
    tls_broker: TlsBroker,
    workers: list[WorkerProcess],
    http: aiohttp.ClientSession,
) -> None:
    settings = over_tls(state_settings, tls_broker)
    await kafka.ensure_topics(settings)
    worker = await spawn_ready(workers, settings, http)
    customer = f"4917{uuid.uuid4().int % 10**8:08d}"
    producer = AIOKafkaProducer(**kafka.connection(settings), acks="all", enable_idempotence=False)
    await producer.start()
    try:
        for key, value in inbound_records(InboundSpec(kind="text", wa_id=customer, text="hi over tls")):
            await producer.send_and_wait(settings.topic(WA_INBOUND), value, key=key.encode())
    finally:
        await producer.stop()

    async def mapped() -> bool:
        status, body = await get_json(http, f"{worker.url}/state/mapping/{customer}", tenantId=TENANT)
        return status == 200 and body.get("source") == "table"

    await wait_until(mapped, 30, "the customer's conversation, made by the worker over TLS")


def test_sasl_settings_reach_every_client_and_never_show_the_password() -> None:
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="wabridge",
        kafka_sasl_password=SecretStr("kafka-password-not-for-logs"),
    )
    options = kafka.connection(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert (options["sasl_mechanism"], options["sasl_plain_username"]) == ("SCRAM-SHA-512", "wabridge")
    assert options["sasl_plain_password"] == "kafka-password-not-for-logs"
    assert options["ssl_context"].check_hostname
    credentials = kafka.faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.mechanism.value == "SCRAM-SHA-512" and credentials.ssl_context is not None
    assert "kafka-password-not-for-logs" not in repr(settings)

    missing = settings.model_copy(update={"kafka_sasl_password": None})
    with pytest.raises(ConfigurationError, match="WABRIDGE_KAFKA_SASL_PASSWORD"):
        kafka.connection(missing)
    assert kafka.faust_credentials(Settings(kafka_security_protocol="PLAINTEXT")) is None
