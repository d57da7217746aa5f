"""The RabbitMQ -> Kafka bridge: one record per event, on its customer's partition, in arrival order;
nothing acknowledged to Meta is lost when the bridge is killed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict

import aio_pika
import orjson
import pytest
from aiokafka.partitioner import murmur2

from tests.integration.edge_fixtures import (
    APP_SECRET,
    PHONE_NUMBER_ID,
    RunningEdge,
    drain,
    read_topic,
    settings_env,
    webhook_body,
)
from wabridge.connectors import rabbitmq
from wabridge.connectors.bridge import Bridge
from wabridge.settings import Settings
from wabridge.simulators.customer import InboundSpec, build_message, build_webhook, encode_webhook, sign_webhook
from wabridge.streams.topics import DEAD_LETTER_SUFFIX, INBOUND_WHATSAPP_MESSAGES, WA_INBOUND


def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's (and Faust's) default partitioner: murmur2 of the key bytes."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


async def post(edge: RunningEdge, body: bytes) -> None:
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign_webhook(APP_SECRET, body)}
    async with edge.session.post(edge.url + "/webhook/meta", data=body, headers=headers) as response:
        assert response.status == 200, await response.text()


def status_webhook(wamid: str, status: str, recipient: str) -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
        "statuses": [{"id": wamid, "status": status, "timestamp": "1750000000", "recipient_id": recipient}],
    }
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }
    return orjson.dumps(payload)


async def run_bridge(settings: Settings) -> tuple[Bridge, asyncio.Task[None]]:
    bridge = Bridge(settings)
    return bridge, asyncio.create_task(bridge.run())


async def test_batches_split_per_event_onto_the_customers_partition_in_arrival_order(edge: RunningEdge) -> None:
    settings = edge.settings
    customers = [f"1650555{i:04d}" for i in range(40)]
    # One big batch with many customers, then three more webhooks per customer, then a status each.
    big = [InboundSpec(kind="text", wa_id=c, text=f"{c} 0", wamid=f"wamid.{c}.0") for c in customers]
    posting_began = time.time()
    await post(edge, webhook_body(*big))
    for n in range(1, 4):
        for c in customers:
            await post(edge, webhook_body(InboundSpec(kind="text", wa_id=c, text=f"{c} {n}", wamid=f"wamid.{c}.{n}")))
    for c in customers:
        await post(edge, status_webhook(f"wamid.out.{c}", "delivered", c))
    posting_ended = time.time()

    bridge, task = await run_bridge(settings)
    try:
        expected = len(customers) * 5
        records = await read_topic(settings, WA_INBOUND, expected)
    finally:
        bridge.stop()
        await task

    assert len(records) == expected
    sequence: dict[str, list[str]] = defaultdict(list)
    for record in records:
        event = orjson.loads(record.value)
        key = record.key.decode()
        assert key == f"acme:{event['customer_id']}"
        assert record.partition == partition_of(record.key, settings.kafka_partitions)
        sequence[event["customer_id"]].append(event["event"]["id"])
        # The edge's receive time survives the queue to the microsecond (an AMQP float header
        # would round it to 128 s, and every end-to-end latency with it).
        assert posting_began <= event["received_at"] <= posting_ended
    for c in customers:
        assert sequence[c] == [f"wamid.{c}.{n}" for n in range(4)] + [f"wamid.out.{c}"]


async def test_unbridgeable_message_is_dead_lettered_with_the_reason(provisioned: Settings) -> None:
    connection = await rabbitmq.connect(provisioned)
    try:
        channel = await connection.channel()
        queue = provisioned.queue(INBOUND_WHATSAPP_MESSAGES)
        await channel.default_exchange.publish(
            aio_pika.Message(b"{not json", headers={"tenants": "{}", "received_at": 1.0}), routing_key=queue
        )
        bridge, task = await run_bridge(provisioned)
        for _ in range(100):
            dead_letters = await drain(provisioned, queue + DEAD_LETTER_SUFFIX, idle_s=0.2)
            if dead_letters:
                break
        bridge.stop()
        await task
        [dead] = dead_letters
        assert dead.body == b"{not json"
        assert "not valid JSON" in str(dead.headers["x-wabridge-reason"])
    finally:
        await connection.close()


async def _publish_webhooks(settings: Settings, count: int) -> list[str]:
    """Webhooks as the edge leaves them in RabbitMQ (raw body + edge headers), one message each."""
    connection = await rabbitmq.connect(settings)
    wamids = []
    try:
        channel = await connection.channel(publisher_confirms=True)
        for i in range(count):
            wamid = f"wamid.kill.{i}"
            wamids.append(wamid)
            customer = f"1650666{i % 25:04d}"
            payload = build_webhook(
                waba_id="1", display_phone_number="15550783881", phone_number_id=PHONE_NUMBER_ID,
                messages=[build_message(InboundSpec(kind="text", wa_id=customer, wamid=wamid, text=str(i)))],
            )  # fmt: skip
            await channel.default_exchange.publish(
                aio_pika.Message(
                    encode_webhook(payload),
                    headers={"tenants": orjson.dumps({PHONE_NUMBER_ID: "acme"}).decode(), "received_at": 1.0},
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=settings.queue(INBOUND_WHATSAPP_MESSAGES),
            )
    finally:
        await connection.close()
    return wamids


def _start_bridge(settings: Settings) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "wabridge", "bridge"],
        env=settings_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def _wait_for_records(settings: Settings, at_least: int) -> None:
    records = await read_topic(settings, WA_INBOUND, at_least, timeout_s=30)
    assert len(records) >= at_least


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
async def test_bridge_stopped_mid_stream_loses_nothing(provisioned: Settings, stop_signal: signal.Signals) -> None:
    from tests.integration.edge_fixtures import free_port

    settings = provisioned.model_copy(update={"bridge_metrics_port": free_port()})
    wamids = await _publish_webhooks(settings, 600)
    first = _start_bridge(settings)
    try:
        await _wait_for_records(settings, 50)
        os.kill(first.pid, stop_signal)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    if stop_signal == signal.SIGTERM:
        assert first.returncode == 0, first.stderr.read().decode() if first.stderr else ""
    second = _start_bridge(settings)
    try:
        records = await read_topic(settings, WA_INBOUND, len(wamids), timeout_s=90)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    seen = [orjson.loads(r.value)["event"]["id"] for r in records]
    assert set(seen) == set(wamids), f"lost: {sorted(set(wamids) - set(seen))[:5]}"
    if stop_signal == signal.SIGTERM:
        assert len(seen) == len(wamids), "a clean stop must not produce anything twice"
    # Per customer, the first occurrence of each wamid is in publishing order (duplicates after a
    # SIGKILL are re-sends of a suffix, which the normalize stage drops on wamid).
    per_customer: dict[str, list[int]] = defaultdict(list)
    firsts = {}
    for r in records:
        event = orjson.loads(r.value)
        firsts.setdefault(event["event"]["id"], event["customer_id"])
    for wamid, customer in firsts.items():
        per_customer[customer].append(int(wamid.rsplit(".", 1)[1]))
    for customer, numbers in per_customer.items():
        assert numbers == sorted(numbers), customer


async def test_a_3_mb_batch_of_1000_updates_becomes_1000_records(edge: RunningEdge) -> None:
    filler = "x" * 2_900
    specs = [
        InboundSpec(kind="text", wa_id=f"1650777{i % 300:04d}", wamid=f"wamid.big.{i}", text=f"{i} {filler}")
        for i in range(1000)
    ]
    body = webhook_body(*specs)
    assert len(body) > 2.9e6
    await post(edge, body)
    bridge, task = await run_bridge(edge.settings)
    try:
        records = await read_topic(edge.settings, WA_INBOUND, 1000)
    finally:
        bridge.stop()
        await task
    events = [orjson.loads(r.value) for r in records]
    assert sorted(e["event"]["id"] for e in events) == sorted(f"wamid.big.{i}" for i in range(1000))
    assert len({e["customer_id"] for e in events}) == 300
    assert len({r.partition for r in records}) == edge.settings.kafka_partitions
