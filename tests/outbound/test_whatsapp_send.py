"""The WhatsApp send client against the Meta simulator (a real HTTP server): what Meta accepts
gives its wamid, and every refusal is classified once, by the reference's table of error codes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from tests.integration.edge_fixtures import make_tenant
from wabridge.connectors.meta_graph import (
    TEXT_LIMIT,
    MetaAuthError,
    MetaGraphClient,
    NumberRateLimited,
    PairRateLimited,
    SendRefused,
    WindowClosed,
    send_error,
    text_parts,
)
from wabridge.errors import PermanentError, TransientError
from wabridge.simulators import MetaSimulator
from wabridge.simulators.meta_config import MetaPhoneNumber, MetaSimConfig

PHONE_NUMBER_ID = "106540352242922"
TOKEN = SecretStr("fake-access-token-send")
CUSTOMER = "16505551234"


@pytest.fixture
async def meta() -> AsyncIterator[MetaSimulator]:
    number = MetaPhoneNumber(
        phone_number_id=PHONE_NUMBER_ID, access_token=TOKEN, app_secret=SecretStr("fake-app-secret-send")
    )
    async with MetaSimulator(MetaSimConfig(phone_numbers=[number]), seed=5).serve() as simulator:
        yield simulator


@pytest.fixture
async def client() -> AsyncIterator[MetaGraphClient]:
    async with MetaGraphClient(graph_version="v26.0") as graph:
        yield graph


def text(body: str) -> dict[str, object]:
    return {"to": CUSTOMER, "type": "text", "text": {"body": body}}


async def test_an_accepted_send_gives_the_wamid_meta_assigned(meta: MetaSimulator, client: MetaGraphClient) -> None:
    tenant = make_tenant("acme", PHONE_NUMBER_ID, meta_graph_url=meta.url)
    accepted = await client.send_message(tenant, PHONE_NUMBER_ID, TOKEN, text("How can I help?"))
    [sent] = meta.sent_messages(PHONE_NUMBER_ID)
    assert (accepted.wamid, accepted.wa_id) == (sent.wamid, CUSTOMER)
    assert sent.body == {
        "messaging_product": "whatsapp", "recipient_type": "individual", **text("How can I help?")
    }  # fmt: skip


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (400, 130429, NumberRateLimited),
        (400, 80007, NumberRateLimited),
        (400, 131056, PairRateLimited),
        (400, 131047, WindowClosed),
        (400, 131026, SendRefused),
        (400, 132001, SendRefused),
        (500, 131000, TransientError),
        (503, 2, TransientError),
    ],
)
async def test_each_refusal_is_the_error_the_reference_says(
    meta: MetaSimulator, client: MetaGraphClient, status: int, code: int, error: type[Exception]
) -> None:
    tenant = make_tenant("acme", PHONE_NUMBER_ID, meta_graph_url=meta.url)
    meta.fault_next_sends(PHONE_NUMBER_ID, status, code, retry_after="7")
    with pytest.raises(error) as refused:
        await client.send_message(tenant, PHONE_NUMBER_ID, TOKEN, text("hello"))
    assert meta.sent_messages(PHONE_NUMBER_ID) == []
    if isinstance(refused.value, TransientError):
        assert refused.value.retry_after == 7.0
    else:
        assert isinstance(refused.value, PermanentError)
        assert refused.value.reason == ("window_closed" if code == 131047 else f"meta_{code}")


async def test_a_refused_token_and_an_invalid_message_are_told_apart(
    meta: MetaSimulator, client: MetaGraphClient
) -> None:
    tenant = make_tenant("acme", PHONE_NUMBER_ID, meta_graph_url=meta.url)
    with pytest.raises(MetaAuthError):
        await client.send_message(tenant, PHONE_NUMBER_ID, SecretStr("fake-revoked-token"), text("hello"))
    with pytest.raises(SendRefused) as refused:
        await client.send_message(tenant, PHONE_NUMBER_ID, TOKEN, {"to": CUSTOMER, "type": "text", "text": {}})
    assert refused.value.reason == "meta_100"


async def test_meta_unreachable_is_transient(client: MetaGraphClient) -> None:
    tenant = make_tenant("acme", PHONE_NUMBER_ID, meta_graph_url="http://127.0.0.1:9")
    with pytest.raises(TransientError):
        await client.send_message(tenant, PHONE_NUMBER_ID, TOKEN, text("hello"))


def test_a_failed_statuss_code_goes_through_the_same_table() -> None:
    assert isinstance(send_error(131047, "failed status"), WindowClosed)
    assert isinstance(send_error(131056, "failed status"), PairRateLimited)
    assert isinstance(send_error(190, "failed status"), MetaAuthError)
    assert send_error(131050, "failed status").reason == "meta_131050"  # type: ignore[attr-defined]
    assert send_error(None, "no code").reason == "meta_refused"  # type: ignore[attr-defined]


def test_long_text_is_split_in_order_at_breaks_within_the_limit() -> None:
    paragraph = "word " * 600
    text_ = f"{paragraph}\n\n{paragraph}\n\n{'x' * 5000}"
    parts = text_parts(text_)
    assert all(0 < len(part) <= TEXT_LIMIT for part in parts)
    assert "".join(parts).replace(" ", "").replace("\n", "") == text_.replace(" ", "").replace("\n", "")
    assert parts[0] == paragraph.rstrip()  # cut at the paragraph break, not mid-paragraph
    assert text_parts("short") == ["short"]
