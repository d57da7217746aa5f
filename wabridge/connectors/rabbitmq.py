"""RabbitMQ topology: durable quorum queues with a delivery limit and a dead-letter queue each.

Quorum queues because only they enforce ``x-delivery-limit``: a poison message that keeps being
returned is dead-lettered after that many deliveries instead of looping forever.
"""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from wabridge.settings import Settings
from wabridge.streams.topics import DEAD_LETTER_EXCHANGE, DEAD_LETTER_SUFFIX, QUEUES


async def connect(settings: Settings) -> AbstractRobustConnection:
    return await aio_pika.connect_robust(settings.rabbitmq_url.get_secret_value())


def dead_letter_exchange(settings: Settings) -> str:
    return settings.queue(DEAD_LETTER_EXCHANGE)


def queue_arguments(settings: Settings, queue_name: str) -> dict[str, object]:
    """Arguments every declaration of ``queue_name`` must use (RabbitMQ refuses a mismatch)."""
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": settings.rabbitmq_delivery_limit,
        "x-dead-letter-exchange": dead_letter_exchange(settings),
        "x-dead-letter-routing-key": queue_name + DEAD_LETTER_SUFFIX,
    }


async def declare_topology(channel: AbstractChannel, settings: Settings) -> list[str]:
    """Declare the dead-letter exchange, each queue and its dead-letter queue; idempotent."""
    dlx = await channel.declare_exchange(dead_letter_exchange(settings), aio_pika.ExchangeType.DIRECT, durable=True)
    declared = []
    for base in QUEUES:
        name = settings.queue(base)
        dead = await channel.declare_queue(
            name + DEAD_LETTER_SUFFIX, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead.bind(dlx, routing_key=name + DEAD_LETTER_SUFFIX)
        await channel.declare_queue(name, durable=True, arguments=queue_arguments(settings, name))
        declared += [name, name + DEAD_LETTER_SUFFIX]
    return declared


async def ensure_topology(settings: Settings) -> list[str]:
    connection = await connect(settings)
    try:
        channel = await connection.channel()
        return await declare_topology(channel, settings)
    finally:
        await connection.close()


async def delete_topology(settings: Settings) -> None:
    """Remove this prefix's queues and exchange (test clean-up)."""
    connection = await connect(settings)
    try:
        channel = await connection.channel()
        for base in QUEUES:
            name = settings.queue(base)
            await channel.queue_delete(name)
            await channel.queue_delete(name + DEAD_LETTER_SUFFIX)
        await channel.exchange_delete(dead_letter_exchange(settings))
    finally:
        await connection.close()
