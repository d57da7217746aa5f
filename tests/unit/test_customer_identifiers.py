"""Which identifiers of a Meta event name its customer (pure): BSUIDs first, only Meta's shapes."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from wabridge.schemas.meta import customer_identifiers, is_bsuid, split_webhook
from wabridge.schemas.records import WebhookEvent
from wabridge.simulators.customer import InboundSpec, build_message, build_webhook

PHONE, BSUID = "16505551234", "US.13491208655302741918"


def event_of(message: dict[str, object], contact: dict[str, object] | None = None) -> WebhookEvent:
    payload = build_webhook(
        waba_id="1", display_phone_number="1555", phone_number_id="106", messages=[(message, contact)]
    )
    [event] = split_webhook(payload, tenant_id="acme", webhook_id="w", received_at=time.time())
    return event


def test_a_bsuid_comes_before_the_phone_and_the_first_key_is_the_phone() -> None:
    ids = customer_identifiers(event_of(*build_message(InboundSpec(kind="text", wa_id=PHONE, user_id=BSUID))))
    assert ids is not None and ids.names == (BSUID, PHONE) and ids.first_key == PHONE


def test_a_user_id_change_links_the_new_and_previous_bsuids() -> None:
    spec = InboundSpec(
        kind="system_user_id_change", user_id=BSUID, new_user_id="US.13491208655302749999", bsuid_only=True
    )
    ids = customer_identifiers(event_of(*build_message(spec)))
    assert ids is not None and ids.names == ("US.13491208655302749999",) and ids.links == (BSUID,)


def test_a_number_change_links_the_new_number() -> None:
    spec = InboundSpec(kind="system_number_change", wa_id=PHONE, new_wa_id="16505550000")
    ids = customer_identifiers(event_of(*build_message(spec)))
    assert ids is not None and ids.names == (PHONE,) and ids.links == ("16505550000",)


@given(
    from_=st.one_of(st.none(), st.text(max_size=40), st.integers()),
    user_id=st.one_of(st.none(), st.text(max_size=40), st.integers(), st.lists(st.integers(), max_size=2)),
)
def test_only_values_shaped_like_metas_identifiers_are_named(from_: object, user_id: object) -> None:
    message: dict[str, object] = {"id": "wamid.x", "timestamp": "1", "type": "text", "text": {"body": "x"}}
    if from_ is not None:
        message["from"] = from_
    if user_id is not None:
        message["from_user_id"] = user_id
    ids = customer_identifiers(event_of(message))
    for identifier in ids.all if ids else ():
        assert is_bsuid(identifier) or identifier.isdigit()
