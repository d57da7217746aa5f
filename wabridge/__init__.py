"""wabridge: WhatsApp Cloud API <-> Genesys Cloud Open Messaging, as Kafka-style stream processing."""

__version__ = "0.1.0"
