"""The one retry decision (``failures.classify``): each poison case the pure core raises on is
permanent (routed, never retried forever, never a crash); each outage is transient."""

from __future__ import annotations

import decimal
import errno
from collections.abc import Callable
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiokafka import errors as kafka_errors
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.unit import meta_payloads as P
from wabridge.errors import PermanentError, TransientError
from wabridge.failures import UNEXPECTED_REASON, classify, describe
from wabridge.schemas.meta import normalize, split_webhook
from wabridge.schemas.records import InboundMessage
from wabridge.transforms.inbound import to_open_messages


def _message(body: dict[str, Any]) -> dict[str, Any]:
    return body["entry"][0]["changes"][0]["value"]["messages"][0]  # type: ignore[no-any-return]


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def _set_item(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda body: _message(body)["order"]["product_items"][0].__setitem__(field, value)


POISONS: dict[str, tuple[str, Callable[[dict[str, Any]], None]]] = {
    "price 1e30": ("order", _set_item("item_price", 1e30)),
    "quantity over int64": ("order", _set_item("quantity", 10**30)),
    "timestamp far in the future": ("text", lambda b: _message(b).__setitem__("timestamp", "99999999999999")),
    "timestamp over int64": ("text", lambda b: _message(b).__setitem__("timestamp", "1" + "0" * 40)),
    "timestamp 1e18 (OSError EOVERFLOW)": ("text", lambda b: _message(b).__setitem__("timestamp", str(10**18))),
    "timestamp before year 1": ("text", lambda b: _message(b).__setitem__("timestamp", "-99999999999")),
    "field nested 300 deep": ("text", lambda b: _message(b).__setitem__("unexpected", _nested(300))),
}


def run_pure_core(body: dict[str, Any]) -> None:
    """What the bridge and the stages do to one webhook, without I/O: split, encode, normalize, transform."""
    for event in split_webhook(orjson.dumps(body), tenant_id="t", webhook_id="w", received_at=1.0):
        record = normalize(type(event).from_bytes(event.to_bytes()))
        record = type(record).from_bytes(record.to_bytes())
        if isinstance(record, InboundMessage):
            to_open_messages(record, attachments=[], media_unavailable=False, custom_attributes={})


@pytest.mark.parametrize("name", list(POISONS))
def test_what_the_pure_core_raises_on_poison_is_permanent(name: str) -> None:
    kind, mutate = POISONS[name]
    body = P.single(P.get(kind))
    mutate(body)
    with pytest.raises(Exception) as raised:
        run_pure_core(body)
    decided = classify(raised.value)
    assert isinstance(decided, PermanentError), (name, raised.value)
    # Either the core refused it itself (its own reason) or it raised something unplanned.
    assert decided is raised.value or decided.reason == UNEXPECTED_REASON


@pytest.mark.parametrize(
    "exc",
    [
        decimal.InvalidOperation(),
        ValueError("year 3170843 is out of range"),
        TypeError("Integer exceeds 64-bit range"),
        OverflowError("date value out of range"),
        RecursionError("maximum recursion depth exceeded"),
        orjson.JSONEncodeError("Recursion limit reached"),
        KeyError("body"),
        OSError(errno.EOVERFLOW, "Value too large for defined data type"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_error_of_the_data_is_permanent_with_a_fixed_reason(exc: Exception) -> None:
    decided = classify(exc)
    assert isinstance(decided, PermanentError)
    assert decided.reason == UNEXPECTED_REASON
    assert type(exc).__name__ in str(decided)


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (asyncpg.DataError("invalid input for query argument $1 (value out of int64 range)"), "postgres_rejected"),
        (asyncpg.UniqueViolationError("duplicate key"), "postgres_rejected"),
        (kafka_errors.MessageSizeTooLargeError(), "record_refused"),
        (kafka_errors.RecordTooLargeError(), "record_refused"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else value,
)
def test_a_record_a_store_refuses_is_permanent(exc: Exception, reason: str) -> None:
    decided = classify(exc)
    assert isinstance(decided, PermanentError)
    assert decided.reason == reason


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connect call failed"),
        OSError(errno.EHOSTUNREACH, "No route to host"),
        OSError("Multiple exceptions: [Errno 111] Connect call failed"),
        TimeoutError(),
        asyncpg.PostgresConnectionError("connection lost"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.SerializationError("could not serialize access"),
        # A pooled connection whose server was SIGKILLed mid-statement.
        asyncpg.InternalClientError("cannot switch to state 11; another operation (2) is in progress"),
        kafka_errors.KafkaConnectionError(),
        kafka_errors.KafkaTimeoutError(),  # aiokafka marks it not retriable; it is the cluster's state
        kafka_errors.NotLeaderForPartitionError(),
        kafka_errors.NodeNotReadyError(),
        RedisConnectionError("Connection refused"),
        aiohttp.ClientConnectionError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_unreachable_dependency_is_transient(exc: Exception) -> None:
    assert isinstance(classify(exc), TransientError)


def test_our_own_decisions_pass_through() -> None:
    permanent = PermanentError("no", reason="genesys_400")
    transient = TransientError("later", retry_after=3.0)
    assert classify(permanent) is permanent
    assert classify(transient) is transient


def test_describe_is_one_bounded_line() -> None:
    text = describe(ValueError("line one\nline two " + "x" * 1000), limit=80)
    assert "\n" not in text
    assert len(text) == 80
    assert text.startswith("ValueError: line one line two")
