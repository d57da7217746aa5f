"""The bridge against what stops consumers: poison webhooks, RabbitMQ dropping it, Kafka going away.

Each fault is followed by other customers' messages, which must all reach Kafka once per delivery
and in order per customer, with the bridge still consuming and ready.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections import defaultdict

import aio_pika
import orjson
import pytest
from pydantic import SecretStr

from tests.integration.edge_fixtures import (
    APP_SECRET,
    PHONE_NUMBER_ID,
    RunningEdge,
    drain,
    read_topic,
    webhook_body,
)
from tests.services import OwnRabbitMQ, TcpProxy
from wabridge.connectors import kafka, rabbitmq
from wabridge.connectors.bridge import CONSUMER_RESTARTS, Bridge
from wabridge.observability import NotReady
from wabridge.settings import Settings
from wabridge.simulators.customer import InboundSpec, sign_webhook
from wabridge.streams.topics import DEAD_LETTER_SUFFIX, INBOUND_WHATSAPP_MESSAGES, WA_INBOUND

CUSTOMERS = [f"1650888{i:04d}" for i in range(6)]


async def post(edge: RunningEdge, body: bytes) -> None:
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign_webhook(APP_SECRET, body)}
    async with edge.session.post(edge.url + "/webhook/meta", data=body, headers=headers) as response:
        assert response.status == 200, await response.text()


async def post_round(edge: RunningEdge, round_: int) -> list[str]:
    """One text message per customer; returns their wamids."""
    wamids = []
    for customer in CUSTOMERS:
        wamid = f"wamid.{customer}.{round_}"
        await post(edge, webhook_body(InboundSpec(kind="text", wa_id=customer, wamid=wamid, text=f"{round_}")))
        wamids.append(wamid)
    return wamids


def with_message_field(body: bytes, name: str, value: object) -> bytes:
    payload = orjson.loads(body)
    payload["entry"][0]["changes"][0]["value"]["messages"][0][name] = value
    return json.dumps(payload).encode()  # the standard library writes deeper than orjson, as Meta's peers may


def nested(depth: int) -> object:
    value: object = "bottom"
    for _ in range(depth):
        value = {"n": value}
    return value


def assert_in_order(records: list[object], expected: list[str]) -> None:
    """Every expected wamid arrived, and each customer's first arrivals are in posting order."""
    firsts: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    for record in records:
        event = orjson.loads(record.value)  # type: ignore[attr-defined]
        wamid = event["event"]["id"]
        if wamid in seen or not wamid.startswith("wamid.1650888"):
            continue
        seen.add(wamid)
        firsts[event["customer_id"]].append(wamid)
    assert seen == set(expected), f"missing: {sorted(set(expected) - seen)[:5]}"
    for customer, wamids in firsts.items():
        assert wamids == [w for w in expected if w.startswith(f"wamid.{customer}.")], customer


async def ready_within(bridge: Bridge, seconds: float) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        try:
            return await bridge.readiness()
        except NotReady:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def not_ready_within(bridge: Bridge, seconds: float) -> str:
    """The reason ``/readyz`` gives once the bridge says it is not ready."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        try:
            await bridge.readiness()
        except NotReady as exc:
            return str(exc)
        await asyncio.sleep(0.05)
    raise AssertionError(f"the bridge still said ready after {seconds} s")


async def stop(bridge: Bridge, task: asyncio.Task[None]) -> None:
    bridge.stop()
    await asyncio.wait_for(task, 60)


async def test_poison_webhooks_are_dead_lettered_with_reasons_and_the_flow_goes_on(edge: RunningEdge) -> None:
    settings = edge.settings
    expected = await post_round(edge, 0)
    template = webhook_body(InboundSpec(kind="text", wa_id="16509990000", wamid="wamid.poison", text="x"))
    # Valid JSON, validly signed, and each once stopped the consumer or would: deeper than a
    # serialiser writes (orjson stops at 255), and one event over the broker's record size.
    await post(edge, with_message_field(template, "unexpected", nested(400)))
    expected += await post_round(edge, 1)
    await post(edge, with_message_field(template, "text", {"body": "y" * 1_500_000}))
    expected += await post_round(edge, 2)
    # Shapes the splitter passes on (normalize judges them): wrong types and nulls are not the bridge's to refuse.
    await post(edge, with_message_field(template, "from", {"an": ["object"]}))
    await post(edge, with_message_field(template, "timestamp", None))
    expected += await post_round(edge, 3)

    bridge = Bridge(settings)
    task = asyncio.create_task(bridge.run())
    try:
        records = await read_topic(settings, WA_INBOUND, len(expected) + 2)
        dead = await drain(settings, settings.queue(INBOUND_WHATSAPP_MESSAGES) + DEAD_LETTER_SUFFIX)
        assert await bridge.readiness() is True
        assert not task.done()
    finally:
        await stop(bridge, task)

    assert_in_order(records, expected)
    reasons = sorted(str(m.headers["x-wabridge-reason"]) for m in dead)
    assert len(reasons) == 2, reasons
    assert any("depth" in r or "Recursion" in r for r in reasons), reasons
    assert any("MessageSizeTooLarge" in r for r in reasons), reasons
    # The raw body is kept, byte for byte, for a redrive after a fix.
    assert {len(m.body) > 1_500_000 for m in dead} == {True, False}


def _rabbitmq_connections() -> list[tuple[str, str]]:
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [(line.split("\t", 1)[0], line) for line in listing.splitlines() if "\t" in line]


def close_rabbitmq_connections(containing: str) -> int:
    """Close, on the server's side, every connection whose client properties mention ``containing``."""
    closed = 0
    for pid, line in _rabbitmq_connections():
        if containing in line:
            subprocess.run(
                ["rabbitmqctl", "-q", "close_connection", pid, "closed by the fault suite"], check=True, timeout=60
            )
            closed += 1
    return closed


@pytest.mark.slow
async def test_rabbitmq_closing_the_bridges_connection_mid_stream_loses_nothing(edge: RunningEdge) -> None:
    settings = edge.settings
    expected = []
    for round_ in range(15):
        expected += await post_round(edge, round_)
    queue = settings.queue(INBOUND_WHATSAPP_MESSAGES)
    restarts_before = CONSUMER_RESTARTS.labels(INBOUND_WHATSAPP_MESSAGES)._value.get()

    bridge = Bridge(settings)
    task = asyncio.create_task(bridge.run())
    try:
        await read_topic(settings, WA_INBOUND, 10)
        assert await asyncio.to_thread(close_rabbitmq_connections, f"wabridge-bridge {queue}") == 1
        for round_ in range(15, 20):
            expected += await post_round(edge, round_)
        records = await read_topic(settings, WA_INBOUND, len(expected))
        assert await ready_within(bridge, 10)
    finally:
        await stop(bridge, task)

    assert CONSUMER_RESTARTS.labels(INBOUND_WHATSAPP_MESSAGES)._value.get() == restarts_before + 1
    assert_in_order(records, expected)
    assert await drain(settings, queue + DEAD_LETTER_SUFFIX, idle_s=0.3) == []


async def behind_proxy(edge: RunningEdge, kafka_proxy: TcpProxy, *, request_timeout_ms: int) -> Settings:
    """The edge's settings on the Kafka behind ``kafka_proxy``, its topics declared there."""
    settings = edge.settings.model_copy(
        update={"kafka_bootstrap": f"127.0.0.1:{kafka_proxy.port}", "kafka_request_timeout_ms": request_timeout_ms}
    )
    await kafka.ensure_topics(settings)
    edge.settings = settings
    return settings


@pytest.mark.slow
async def test_kafka_down_longer_than_the_delivery_limit_allows_dead_letters_nothing(
    edge: RunningEdge, kafka_proxy: TcpProxy
) -> None:
    # Each request times out after 1 s; a bridge that returned failed webhooks to RabbitMQ would
    # have spent their delivery limit (5) many times over in the 12 s outage.
    settings = await behind_proxy(edge, kafka_proxy, request_timeout_ms=1000)
    before = await post_round(edge, 0)
    bridge = Bridge(settings)
    task = asyncio.create_task(bridge.run())
    try:
        await read_topic(settings, WA_INBOUND, len(before))
        await kafka_proxy.cut()
        expected = []
        for round_ in range(1, 8):
            expected += await post_round(edge, round_)
        await asyncio.sleep(12)
        with pytest.raises(NotReady, match="kafka: holding"):
            await bridge.readiness()
        await kafka_proxy.start()
        records = await read_topic(settings, WA_INBOUND, len(before) + len(expected), timeout_s=90)
        assert await ready_within(bridge, 30)
    finally:
        await stop(bridge, task)

    assert_in_order(records, before + expected)
    assert await drain(settings, settings.queue(INBOUND_WHATSAPP_MESSAGES) + DEAD_LETTER_SUFFIX, idle_s=0.3) == []


async def test_kafka_back_between_two_of_a_customers_records_keeps_their_order(
    edge: RunningEdge, kafka_proxy: TcpProxy
) -> None:
    # A customer writes twice while Kafka is away, the second message after the first's batch
    # has waited a while. Kafka is back once the first batch has waited longer than the request
    # timeout, the second not yet: the second may not land ahead of the first.
    settings = await behind_proxy(edge, kafka_proxy, request_timeout_ms=3000)
    customer = CUSTOMERS[0]
    wamids = [f"wamid.{customer}.{n}" for n in range(3)]

    async def write(n: int) -> None:
        await post(edge, webhook_body(InboundSpec(kind="text", wa_id=customer, wamid=wamids[n], text=str(n))))

    bridge = Bridge(settings)
    task = asyncio.create_task(bridge.run())
    try:
        await write(0)
        await read_topic(settings, WA_INBOUND, 1)
        await kafka_proxy.cut()
        await write(1)
        await asyncio.sleep(1.8)
        await write(2)
        await asyncio.sleep(1.6)  # the first has waited 3.4 s, the second 1.6 s
        await kafka_proxy.start()
        records = await read_topic(settings, WA_INBOUND, 3, timeout_s=60)
        assert await ready_within(bridge, 30)
    finally:
        await stop(bridge, task)

    assert_in_order(records, wamids)


@pytest.mark.slow
async def test_rabbitmq_crashing_under_the_bridge_with_unacked_deliveries_loses_nothing(
    provisioned: Settings, own_rabbitmq: OwnRabbitMQ
) -> None:
    settings = provisioned.model_copy(update={"rabbitmq_url": SecretStr(own_rabbitmq.url)})
    await rabbitmq.ensure_topology(settings)
    expected = await publish_webhooks(settings, 0, 300)
    bridge = Bridge(settings)
    task = asyncio.create_task(bridge.run())
    try:
        await read_topic(settings, WA_INBOUND, 20)  # bridging, with deliveries in flight
        own_rabbitmq.kill()
        assert "not consuming" in await not_ready_within(bridge, 10)
        await asyncio.to_thread(own_rabbitmq.start)  # the quorum queue comes back from disk
        expected += await publish_webhooks(settings, 300, 100)
        records = await read_topic(settings, WA_INBOUND, len(expected), timeout_s=120)
        assert await ready_within(bridge, 30)
    finally:
        await stop(bridge, task)

    assert_in_order(records, expected)
    assert await drain(settings, settings.queue(INBOUND_WHATSAPP_MESSAGES) + DEAD_LETTER_SUFFIX, idle_s=0.3) == []


async def publish_webhooks(settings: Settings, start: int, count: int) -> list[str]:
    """Webhooks as the edge leaves them in RabbitMQ, one text each, round robin over CUSTOMERS."""
    connection = await rabbitmq.connect(settings)
    wamids = []
    try:
        channel = await connection.channel(publisher_confirms=True)
        for n in range(start, start + count):
            customer = CUSTOMERS[n % len(CUSTOMERS)]
            wamid = f"wamid.{customer}.{n}"
            await channel.default_exchange.publish(
                aio_pika.Message(
                    webhook_body(InboundSpec(kind="text", wa_id=customer, wamid=wamid, text=str(n))),
                    headers={"tenants": orjson.dumps({PHONE_NUMBER_ID: "acme"}).decode(), "received_at": "1.0"},
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=settings.queue(INBOUND_WHATSAPP_MESSAGES),
            )
            wamids.append(wamid)
    finally:
        await connection.close()
    return wamids
