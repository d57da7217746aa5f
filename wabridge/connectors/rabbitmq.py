"""RabbitMQ topology: durable quorum queues with a delivery limit and a dead-letter queue each.

Quorum queues because only they enforce ``x-delivery-limit``: a poison message that keeps being
returned is dead-lettered after that many deliveries instead of looping forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from wabridge.errors import TransientError
from wabridge.settings import Settings
from wabridge.streams.topics import DEAD_LETTER_EXCHANGE, DEAD_LETTER_SUFFIX, QUEUES

log = logging.getLogger(__name__)


async def connect(settings: Settings) -> AbstractRobustConnection:
    return await aio_pika.connect_robust(settings.rabbitmq_url.get_secret_value())


def epoch_header(seconds: float) -> str:
    """A time for a message header, to the microsecond.

    AMQP has no double in pamqp's encoding of a Python float: it goes out as a 32-bit float, whose
    step near today's epoch seconds is 128 s. A time therefore travels as its decimal string.
    """
    return f"{seconds:.6f}"


def dead_letter_exchange(settings: Settings) -> str:
    return settings.queue(DEAD_LETTER_EXCHANGE)


def queue_arguments(settings: Settings, queue_name: str) -> dict[str, Any]:
    """Arguments every declaration of ``queue_name`` must use (RabbitMQ refuses a mismatch)."""
    return {
        "x-queue-type": "quorum",
        # One consumer at a time (others wait as hot standbys): the queue's order is kept end to end.
        "x-single-active-consumer": True,
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


class DurablePublisher:
    """Publishes persistent messages and returns only once RabbitMQ has confirmed them.

    The connection is made on first use and remade after a failure, so a process can start while
    RabbitMQ is down and answer "not durable" (the edge's 503) instead of refusing to start.
    """

    def __init__(self, settings: Settings, *, attempts: int = 3, confirm_timeout_s: float = 5.0) -> None:
        self._settings = settings
        self._attempts = attempts
        self._confirm_timeout_s = confirm_timeout_s
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._lock = asyncio.Lock()

    async def _ready_channel(self) -> AbstractChannel:
        async with self._lock:
            if self._channel is not None and not self._channel.is_closed:
                return self._channel
            await self.close()
            self._connection = await aio_pika.connect(
                self._settings.rabbitmq_url.get_secret_value(), timeout=self._confirm_timeout_s
            )
            self._channel = await self._connection.channel(publisher_confirms=True)
            return self._channel

    async def publish(self, queue: str, body: bytes, headers: dict[str, Any]) -> None:
        """Publish to ``queue`` (a full name) or raise ``TransientError`` after ``attempts`` tries."""
        message = aio_pika.Message(
            body,
            headers=headers,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            content_type="application/json",
        )
        last_error: BaseException | None = None
        for attempt in range(1, self._attempts + 1):
            try:
                channel = await self._ready_channel()
                await channel.default_exchange.publish(
                    message, routing_key=queue, mandatory=True, timeout=self._confirm_timeout_s
                )
                return
            except (aio_pika.exceptions.AMQPError, aiormq.exceptions.AMQPError, OSError, TimeoutError) as exc:
                last_error = exc
                log.warning("publish to %s failed (attempt %d/%d): %r", queue, attempt, self._attempts, exc)
                # A confirm that timed out on an open channel (RabbitMQ overloaded) is no reason to
                # drop the channel under every other publish in flight: only a closed one is remade.
                if self._channel is not None and self._channel.is_closed:
                    self._channel = None
                await asyncio.sleep(0.05 * attempt)
        raise TransientError(f"RabbitMQ did not confirm the message on {queue}: {last_error!r}")

    async def healthy(self) -> bool:
        try:
            await self._ready_channel()
        except (aio_pika.exceptions.AMQPError, OSError, TimeoutError, ConnectionError):
            return False
        return True

    async def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(aio_pika.exceptions.AMQPError, OSError, ConnectionError):
                await connection.close()
