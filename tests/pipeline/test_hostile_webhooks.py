"""Seeded hostile webhooks through the real processes: validly signed Meta webhooks of every
message type (with and without usernames' BSUID fields), user preference, template status and
category update and ``user_id_update``, and Genesys outbound webhooks of every kind (agent text
with attachments, quick replies, list pickers, notifications with media headers and buttons,
typing, receipt), each with one field
somewhere in the body deleted, nulled, retyped, made huge, nested deep or pushed out of range.
None gets a 5xx from the edge, no process stops or stops being ready, and every customer's valid
messages after them reach the agent once and in order.

``WABRIDGE_HOSTILE_SEED`` replays a run; ``WABRIDGE_HOSTILE_COUNT`` sends more by hand.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from typing import Any

import orjson

from tests.integration.edge_fixtures import read_topic
from tests.pipeline.conftest import ACME, GLOBEX, Pipeline, wait_for
from tests.pipeline.test_poison_records import ready
from tests.unit import meta_payloads as P
from wabridge.simulators.agent import (
    AgentAttachment,
    build_agent_structured,
    build_agent_text,
    build_agent_typing,
    build_inbound_receipt,
    list_picker,
    notification,
    quick_replies,
    sign_outbound,
)
from wabridge.simulators.customer import InboundSpec, sign_webhook
from wabridge.streams.topics import ERROR_EVENTS

SEED = int(os.environ.get("WABRIDGE_HOSTILE_SEED", "20261202"))
COUNT = int(os.environ.get("WABRIDGE_HOSTILE_COUNT", "150"))
FUZZ_CUSTOMERS = [f"1650555{4000 + i}" for i in range(5)]


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"n": [value]}
    return value


# What a field may become: each a (name, new value) maker.
MUTATIONS: list[tuple[str, Any]] = [
    ("null", lambda rng: None),
    ("empty string", lambda rng: ""),
    ("empty object", lambda rng: {}),
    ("empty list", lambda rng: []),
    ("bool", lambda rng: rng.choice([True, False])),
    ("int", lambda rng: rng.choice([0, -1, 2**31, 2**63, 10**40, -(10**40)])),
    ("float", lambda rng: rng.choice([1e30, -1e308, 1e308, 0.5, -0.0])),
    ("string", lambda rng: rng.choice(["x", "0", "-1", "99999999999999999999", "\u0000\ud7ff\u202e", "<b>&"])),
    ("huge string", lambda rng: "W" * rng.choice([5_000, 70_000])),
    ("list of junk", lambda rng: [None, 1, "a", {"b": []}]),
    ("object of junk", lambda rng: {"unexpected": [1, {"x": None}]}),
    ("deep nesting", lambda rng: nested(rng.choice([40, 300]))),
]


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in ``node`` (the root's own fields and below)."""
    found = []
    if isinstance(node, dict):
        for key, child in node.items():
            found.append((*prefix, key))
            found += paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found.append((*prefix, index))
            found += paths(child, (*prefix, index))
    return found


def mutate(body: dict[str, Any], rng: random.Random) -> str:
    """Change one field anywhere in ``body``; returns what was done, for the failure message."""
    path = rng.choice(paths(body))
    parent: Any = body
    for step in path[:-1]:
        parent = parent[step]
    if rng.random() < 0.15 and isinstance(parent, dict):
        del parent[path[-1]]
        return f"{'.'.join(map(str, path))} deleted"
    name, make = rng.choice(MUTATIONS)
    parent[path[-1]] = make(rng)
    return f"{'.'.join(map(str, path))} -> {name}"


def genesys_kinds(customer: str, index: int) -> dict[str, dict[str, Any]]:
    integration = ACME.integration_id
    attachment = AgentAttachment(
        id=f"media-{index}", media_type="Image", url="http://127.0.0.1:1/x.jpg", mime="image/jpeg",
        filename="x.jpg", size_bytes=100,
    )  # fmt: skip
    return {
        "agent text": build_agent_text(
            integration_id=integration, to_id=customer, text="hello", attachments=[attachment], message_id=f"g-{index}"
        ),
        "typing": build_agent_typing(integration_id=integration, to_id=customer),
        "quick replies": build_agent_structured(
            integration_id=integration, to_id=customer, text="Pick", content=quick_replies("Yes", "No")
        ),
        "list picker": build_agent_structured(
            integration_id=integration, to_id=customer, content=list_picker({"A": ["x", "y"], "B": ["z"]})
        ),
        "notification": build_agent_structured(
            integration_id=integration, to_id=customer, content=notification("welcome", "en-US", "Sheena")
        ),
        "full notification": build_agent_structured(
            integration_id=integration,
            to_id=customer,
            content=notification(
                "5f1c@order_shipped",
                "en-US",
                "Ana",
                "#123",
                header_media={"mediaType": "Image", "url": "http://127.0.0.1:1/h.jpg", "mime": "image/jpeg"},
                buttons=(
                    {"type": "Url", "index": 0, "parameters": [{"text": "A1"}]},
                    {"type": "QuickReply", "index": 1, "payload": "stop"},
                ),
            ),
        ),
        "list picker with prompt": build_agent_structured(
            integration_id=integration,
            to_id=customer,
            content=list_picker({"A": ["x"]}, title="Which one?", button_label="Choose one"),
        ),
        "receipt": build_inbound_receipt(
            integration_id=integration, genesys_message_id=f"g-{index}", wamid=f"wamid.x.{index}", to_id=customer
        ),
    }


def hostile_genesys_webhook(rng: random.Random, index: int) -> tuple[bytes, str]:
    customer = rng.choice(FUZZ_CUSTOMERS)
    kinds = genesys_kinds(customer, index)
    kind = rng.choice(sorted(kinds))
    body = kinds[kind]
    done = mutate(body, rng)
    return json.dumps(body).encode(), f"genesys {kind}: {done}"


def waba_webhook(rng: random.Random, index: int) -> tuple[bytes, str]:
    """A change of the tenant's WhatsApp Business Account, with no phone number: a template's status
    or category update (routed by the WABA), or ``user_id_update`` (Meta's corrected docs say it is
    not sent; a tenant's app that gets one archives it)."""
    field = rng.choice(["message_template_status_update", "template_category_update", "user_id_update"])
    common = {
        "message_template_id": 1000 + index,
        "message_template_name": "welcome",
        "message_template_language": "en_US",
    }
    values = {
        "message_template_status_update": {"event": "PAUSED", **common, "reason": None},
        "template_category_update": {**common, "previous_category": "UTILITY", "new_category": "MARKETING"},
        "user_id_update": {
            "user_id_update": [
                {"wa_id": rng.choice(FUZZ_CUSTOMERS), "user_id": {"previous": "US.1", "current": "US.2"}}
            ]
        },
    }
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": ACME.waba_id, "time": 1, "changes": [{"field": field, "value": values[field]}]}],
    }
    done = mutate(body, rng)
    return json.dumps(body).encode(), f"{field}: {done}"


def hostile_webhook(rng: random.Random, index: int) -> tuple[bytes, str]:
    customer = rng.choice(FUZZ_CUSTOMERS)
    if rng.random() < 0.08:
        return waba_webhook(rng, index)
    if rng.random() < 0.1:  # a customer's marketing preference (the user_preferences field)
        body = P.single(P.get("text"), contacts=[P.contact(wa_id=customer, user_id=None)])
        change = body["entry"][0]["changes"][0]
        change["field"] = "user_preferences"
        value = change["value"]
        value.pop("messages")
        value["metadata"]["phone_number_id"] = ACME.phone_number_id
        value["user_preferences"] = [
            {"wa_id": customer, "detail": "stop", "category": "marketing_messages", "value": "stop", "timestamp": 1}
        ]
        done = mutate(body, rng)
        return json.dumps(body).encode(), f"user_preferences: {done}"
    kind = rng.choice(sorted(P.MESSAGES))
    message = P.get(kind)
    message.update({"id": f"wamid.hostile.{SEED}.{index}", "from": customer})
    message.pop("from_user_id", None)
    contact = P.contact(wa_id=customer, user_id=None)
    if rng.random() < 0.3:  # a customer with a username: the BSUID fields, each open to mutation
        bsuid = f"US.{customer}"
        message.update({"from_user_id": bsuid, "username": f"user{customer}"})
        contact.update({"user_id": bsuid})
        contact.setdefault("profile", {})["username"] = f"user{customer}"
    body = P.single(message, contacts=[contact])
    body["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = ACME.phone_number_id
    done = mutate(body, rng)
    return json.dumps(body).encode(), f"{kind}: {done}"


async def test_hostile_webhooks_get_a_clear_answer_and_stop_nothing(pipeline: Pipeline) -> None:
    rng = random.Random(SEED)
    edge = f"http://127.0.0.1:{pipeline.settings.webhook_port}/webhook"
    statuses: Counter[int] = Counter()
    server_errors = []
    for index in range(COUNT):
        if rng.random() < 0.7:
            body, what = hostile_webhook(rng, index)
            url, signature = f"{edge}/meta", sign_webhook(ACME.app_secret, body)
        else:
            body, what = hostile_genesys_webhook(rng, index)
            url, signature = f"{edge}/genesys", sign_outbound(ACME.webhook_secret, body)
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
        async with pipeline.http.post(url, data=body, headers=headers) as response:
            statuses[response.status] += 1
            if response.status >= 500:
                server_errors.append((what, response.status, (await response.text())[:200]))
    assert server_errors == [], f"seed {SEED}: {server_errors[:5]}"

    # Everyone's valid messages after the storm, the storm's own customers included.
    customers = [*FUZZ_CUSTOMERS, "16505554100"]
    after = await pipeline.send(
        ACME, [InboundSpec(kind="text", wa_id=c, text=f"after {c} #{n}") for n in range(2) for c in customers]
    )
    globex = await pipeline.send(GLOBEX, [InboundSpec(kind="text", wa_id="16505554200", text="globex")])
    await pipeline.wait_arrived(ACME, after, timeout_s=120)
    await pipeline.wait_arrived(GLOBEX, globex)
    for customer in customers:
        # The customer as Genesys knows them: their phone, or the BSUID the storm first showed them by.
        arrived = [
            a.body for a in pipeline.arrived(ACME) if a.body.get("text") in {f"after {customer} #{n}" for n in range(2)}
        ]
        assert [a["text"] for a in arrived] == [f"after {customer} #{n}" for n in range(2)], f"seed {SEED}: {customer}"
        assert {a["channel"]["from"]["id"] for a in arrived} <= {customer, f"US.{customer}"}, f"seed {SEED}"
        assert len({a["channel"]["from"]["id"] for a in arrived}) == 1, f"seed {SEED}: {customer} split in two"
    for port in (
        pipeline.settings.webhook_ops_port,
        pipeline.settings.bridge_metrics_port,
        pipeline.settings.worker_port,
    ):
        await wait_for(lambda port=port: ready(pipeline, port), 30, f"port {port} ready", pipeline)
    assert all(p.proc is not None and p.proc.poll() is None for p in pipeline.processes.values()), pipeline.states()
    # What could not be used is on error-events, each record saying whose it was.
    errors = [orjson.loads(r.value) for r in await read_topic(pipeline.settings, ERROR_EVENTS, 1, timeout_s=5)]
    assert errors, f"seed {SEED}: nothing routed to {ERROR_EVENTS}"
    assert {e["tenant_id"] for e in errors} == {"acme"}, [e for e in errors if e["tenant_id"] != "acme"][:3]
    print(f"hostile webhooks: seed {SEED}, {COUNT} sent, answers {dict(statuses)}")
