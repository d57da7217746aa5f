"""Step normalize of the prepare stage: a bridge ``WebhookEvent`` to a typed, deduplicated record.

The bridge puts one ``WebhookEvent`` per Meta message, status, preference or value-level error on
``wa-inbound``; :func:`normalize_event` checks it against its Kafka key and turns it into an
``InboundMessage``, ``StatusUpdate``, ``PreferenceUpdate``, ``TemplateUpdate`` or ``BusinessError``.

Dedupe (invariant 4): Meta retries webhooks and the bridge may produce a record twice, so each
customer key keeps the ids it has already prepared (wamid for a message, ``wamid:status`` for a
status) in the changelog-backed table ``normalize-seen`` (``agents.context.SeenIds``). The table is keyed like
the topic, so the key's lane is the only writer of its entry: the read-then-write inside one lane is
atomic. An id is remembered only once the event's effect is done (its record on ``wa-ready``, its
status tracked); a crash in between prepares it again, which the next steps' own idempotency
absorbs, rather than losing it.
"""

from __future__ import annotations

import faust
from prometheus_client import Counter

from wabridge.agents.context import SeenIds
from wabridge.errors import PermanentError
from wabridge.schemas.meta import normalize
from wabridge.schemas.records import (
    BusinessError,
    InboundMessage,
    PreferenceUpdate,
    StatusUpdate,
    TemplateUpdate,
    WebhookEvent,
)

STEP = "normalize"
SEEN_TABLE = "normalize-seen"
# Ids remembered per customer. Meta's retries and the bridge's duplicates arrive within minutes,
# and one customer rarely has 500 events in flight; bounded so the table does not grow forever.
SEEN_PER_CUSTOMER = 500

DEDUPLICATED = Counter("wabridge_normalize_duplicates_total", "Events normalize dropped as already seen", ["kind"])
NORMALIZED = Counter("wabridge_normalize_events_total", "Events normalize passed on", ["kind"])

NormalizedRecord = InboundMessage | StatusUpdate | BusinessError | PreferenceUpdate | TemplateUpdate


def dedupe_id(record: NormalizedRecord, event: WebhookEvent) -> str:
    if isinstance(record, InboundMessage):
        return record.wamid
    if isinstance(record, StatusUpdate):
        return record.dedupe_key
    if isinstance(record, PreferenceUpdate):
        return f"preference:{record.category}:{record.preference}:{record.timestamp}"
    if isinstance(record, TemplateUpdate):
        return f"template:{event.event_id}"
    return f"error:{event.event_id}"


def check_key(record_key: str, kafka_key: object) -> None:
    """A record must travel under its own key: the key's lane and table entries are its customer's."""
    if not isinstance(kafka_key, str) or not kafka_key:
        raise PermanentError("record has no key", reason="no_key")
    if record_key != kafka_key:
        raise PermanentError(f"record key {record_key!r} is not its Kafka key", reason="key_mismatch")


def normalize_event(event: WebhookEvent, kafka_key: object) -> NormalizedRecord:
    """The typed record of a bridge event; ``PermanentError`` when it cannot be one."""
    check_key(event.key, kafka_key)
    return normalize(event)


def seen_ids(app: faust.App) -> SeenIds:
    """The ids each customer key has had prepared (table ``normalize-seen``)."""
    return SeenIds(app, SEEN_TABLE, help="Ids of events already prepared, per customer", keep=SEEN_PER_CUSTOMER)
