"""Names of every Kafka topic and RabbitMQ queue the product uses, in one place.

Plain constants (no Faust import) so the embedded stack, the bridge and the tests can create and
find them without loading the stream app. Every stage topic has ``Settings.kafka_partitions``
partitions and is keyed ``tenant_id:customer_id``: one customer's events share one partition.
"""

from __future__ import annotations

from wabridge.settings import Settings

# Stage topics, in pipeline order.
WA_INBOUND = "wa-inbound"  # bridge -> prepare: one record per Meta message, status or error
WA_READY = "wa-ready"  # prepare -> deliver: messages with their conversation and stored attachments
GENESYS_OUTBOUND = "genesys-outbound"  # bridge -> receipts: Genesys outbound webhook events
AGENT_MESSAGES = "agent-messages"  # agent messages and typing, for the outbound (WhatsApp) direction
ERROR_EVENTS = "error-events"  # every permanently failed record, with its reason

STAGE_TOPICS: tuple[str, ...] = (
    WA_INBOUND,
    WA_READY,
    GENESYS_OUTBOUND,
    AGENT_MESSAGES,
    ERROR_EVENTS,
)

# Topics of earlier versions, between steps that the prepare stage now runs in one agent, and
# where their records go instead (``wabridge redrive`` of an error record that names one).
REPLACED_TOPICS: dict[str, str] = {"wa-normalized": WA_INBOUND, "wa-resolved": WA_INBOUND}

# Consumer group of the Faust workers (also the Faust app id).
WORKER_GROUP = "wabridge-worker"

# RabbitMQ: the webhook edge publishes, the bridge connector consumes.
INBOUND_WHATSAPP_MESSAGES = "INBOUND_WHATSAPP_MESSAGES"
GENESYS_OUTBOUND_EVENTS = "GENESYS_OUTBOUND_EVENTS"
QUEUES: tuple[str, ...] = (INBOUND_WHATSAPP_MESSAGES, GENESYS_OUTBOUND_EVENTS)
DEAD_LETTER_EXCHANGE = "wabridge.dead-letter"
DEAD_LETTER_SUFFIX = ".dead-letter"


def stage_topic_names(settings: Settings) -> list[str]:
    return [settings.topic(name) for name in STAGE_TOPICS]


def current_topic(settings: Settings, topic: str) -> str:
    """``topic`` (a full name), or the topic that took over a replaced one's records."""
    for old, new in REPLACED_TOPICS.items():
        if topic == settings.topic(old):
            return settings.topic(new)
    return topic
