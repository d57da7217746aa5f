"""The bridge's identity directory against real PostgreSQL: one key per customer, whichever of their
phone number and BSUIDs Meta names them by, agreed between bridges that race on a new customer."""

from __future__ import annotations

import asyncio
import time

import pytest

from wabridge.connectors import postgres
from wabridge.connectors.identities import IdentityDirectory
from wabridge.errors import TransientError
from wabridge.schemas.meta import split_webhook
from wabridge.schemas.records import WebhookEvent
from wabridge.settings import Settings
from wabridge.simulators.customer import InboundSpec, build_message, build_webhook

TENANT = "acme"
PHONE, BSUID, NEW_BSUID = "16505550901", "US.13491208655302700901", "US.13491208655302700999"


def events(*specs: InboundSpec) -> list[WebhookEvent]:
    payload = build_webhook(
        waba_id="1",
        display_phone_number="15550783881",
        phone_number_id="106540352242922",
        messages=[build_message(spec) for spec in specs],
    )
    return split_webhook(payload, tenant_id=TENANT, webhook_id="w", received_at=time.time())


async def test_a_customer_keeps_the_key_first_seen_through_every_change_of_identifier(
    provisioned: Settings,
) -> None:
    directory = IdentityDirectory(provisioned)
    try:
        first = await directory.keyed(events(InboundSpec(kind="text", wa_id=PHONE)))
        both = await directory.keyed(events(InboundSpec(kind="text", wa_id=PHONE, user_id=BSUID)))
        username = await directory.keyed(events(InboundSpec(kind="text", user_id=BSUID, bsuid_only=True)))
        change = InboundSpec(kind="system_user_id_change", user_id=BSUID, new_user_id=NEW_BSUID, bsuid_only=True)
        changed = await directory.keyed(events(change))
        after = await directory.keyed(events(InboundSpec(kind="text", user_id=NEW_BSUID, bsuid_only=True)))
    finally:
        await directory.close()
    keys = [e.key for batch in (first, both, username, changed, after) for e in batch]
    assert keys == [f"{TENANT}:{PHONE}"] * 5
    assert username[0].customer_id == PHONE and username[0].event["from_user_id"] == BSUID  # the event itself kept

    # A second bridge, with nothing in memory, reads the same answers from PostgreSQL.
    other = IdentityDirectory(provisioned)
    try:
        again = await other.keyed(events(InboundSpec(kind="text", user_id=NEW_BSUID, bsuid_only=True)))
    finally:
        await other.close()
    assert again[0].key == f"{TENANT}:{PHONE}"


async def test_two_bridges_racing_on_a_new_customer_agree(provisioned: Settings) -> None:
    directories = [IdentityDirectory(provisioned) for _ in range(2)]
    spec_a = InboundSpec(kind="text", user_id="US.13491208655302700902", bsuid_only=True)
    spec_b = InboundSpec(kind="text", wa_id="16505550902", user_id="US.13491208655302700902")
    try:
        # One bridge sees the username first, the other the phone and BSUID: one key wins for both.
        a, b = await asyncio.gather(directories[0].keyed(events(spec_a)), directories[1].keyed(events(spec_b)))
    finally:
        for directory in directories:
            await directory.close()
    assert a[0].key == b[0].key
    pool = await postgres.connect(provisioned, min_size=1, max_size=1)
    try:
        rows = await pool.fetch("SELECT DISTINCT customer_id FROM customer_identities WHERE tenant_id = $1", TENANT)
    finally:
        await pool.close()
    assert [r["customer_id"] for r in rows] == [a[0].customer_id]


async def test_identifiers_that_are_not_metas_are_not_recorded(provisioned: Settings) -> None:
    hostile = events(InboundSpec(kind="text", wa_id="16505550903"))[0]
    junk = hostile.model_copy(update={"event": {**hostile.event, "from_user_id": "0", "from": "x\u0000y"}})
    directory = IdentityDirectory(provisioned)
    try:
        [keyed] = await directory.keyed([junk])
    finally:
        await directory.close()
    assert keyed.key == junk.key  # the key the bridge always gave it
    pool = await postgres.connect(provisioned, min_size=1, max_size=1)
    try:
        recorded = await pool.fetch("SELECT identifier FROM customer_identities WHERE tenant_id = $1", TENANT)
    finally:
        await pool.close()
    assert [r["identifier"] for r in recorded] == []  # neither "0" nor the junk, nor a contact it contradicts


async def test_postgres_unreachable_is_transient_and_keys_nothing_wrongly(provisioned: Settings) -> None:
    unreachable = provisioned.model_copy(
        update={"postgres_dsn": type(provisioned.postgres_dsn)("postgresql://nobody@127.0.0.1:1/none")}
    )
    directory = IdentityDirectory(unreachable)
    try:
        with pytest.raises(TransientError):
            await directory.keyed(events(InboundSpec(kind="text", wa_id="16505550904")))
    finally:
        await directory.close()
