"""The one settings object: typed, frozen, read from the environment (``WABRIDGE_*``) in one place.

Every process builds it once (``Settings()``) and passes it on explicitly; no other module reads
``os.environ``. ``wabridge dev up`` writes the embedded stack's values to ``.wabridge/dev.env``,
which is read here after the real environment, so the embedded default needs no configuration
while a deployment sets plain environment variables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_ENV_FILE = Path(".wabridge") / "dev.env"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WABRIDGE_",
        env_file=DEV_ENV_FILE,
        env_file_encoding="utf-8",
        frozen=True,
        extra="ignore",
    )

    # --- Kafka-compatible broker -------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:9092"
    # Every stage topic has this many partitions; tables are co-partitioned with them.
    kafka_partitions: int = Field(default=8, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)
    # Prefix for every topic name and the consumer group: tests and parallel deployments isolate by it.
    kafka_topic_prefix: str = ""
    # Idempotent producer (exactly one copy per send on retry). Tansu cannot do InitProducerId,
    # so the embedded stack turns it off; downstream dedupe on wamid covers the retry duplicates.
    kafka_idempotent: bool = True
    # Consumer group timing of the Faust workers. The rebalance timeout bounds how long a rebalance
    # waits for in-flight lanes to finish; shorter values make tests' rebalances fast.
    kafka_session_timeout_s: float = Field(default=60.0, gt=0)
    kafka_heartbeat_interval_s: float = Field(default=3.0, gt=0)
    kafka_rebalance_timeout_s: float = Field(default=60.0, gt=0)
    # How often a worker commits the offsets its stages have finished (Faust broker_commit_interval).
    kafka_commit_interval_s: float = Field(default=2.8, gt=0)
    # How long a worker's fetch may wait for data (Faust's own value is 1500). Kafka answers a
    # waiting fetch as soon as data arrives; Tansu holds it to the end (~450 ms per stage hop at
    # 1500, measured), so 50 cuts end-to-end latency there ~4x and costs Kafka only empty polls of
    # an idle consumer. Waits of 300 ms and less used to make changelog recovery after a rebalance
    # end early on Tansu; the cause was its ListOffsets answer, which recovery no longer trusts
    # alone (kafka.end_offsets): tests/streams/test_two_workers.py passes 14 of 14 at 50.
    kafka_fetch_max_wait_ms: int = Field(default=50, ge=1)
    # How long the bridge's producer waits for the broker's answer to one request (then it asks again),
    # and for Kafka's ack of a record before the bridge says it holds (nothing is returned to RabbitMQ,
    # whatever the outage's length).
    kafka_request_timeout_ms: int = Field(default=30_000, ge=100)
    # How every Kafka client (workers, bridge, replay, redrive, dev tools) connects: managed Kafka
    # wants SASL_SSL. PLAIN or SCRAM needs the username and password; SSL verifies the brokers
    # against the CA file (default: the system's trust store) and may present a client certificate.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None

    # --- S3 / MinIO ----------------------------------------------------------------------------
    s3_endpoint: str = "http://127.0.0.1:9000"
    # The host presigned URLs are made for: it must be reachable by Genesys.
    s3_public_endpoint: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key: SecretStr = SecretStr("wabridge-dev-access-key")
    s3_secret_key: SecretStr = SecretStr("wabridge-dev-secret-key")
    s3_bucket_webhooks: str = "webhooks-inbound"
    s3_bucket_media_inbound: str = "media-inbound"
    s3_bucket_media_outbound: str = "media-outbound"
    # How long each bucket keeps an object (days; the seed's figures). Raw webhooks are versioned:
    # an overwritten or deleted version goes after the same number of days.
    s3_webhooks_retention_days: int = Field(default=30, ge=1)
    # How long error-events keeps a failed record: at least as long as the raw archive, so a message
    # that failed can be redriven for as long as its webhook can be re-ingested (the broker's own
    # default is 7 days). Set when the topic is created; a shorter existing one is warned of.
    error_events_retention_days: int = Field(default=30, ge=1)
    s3_media_inbound_retention_days: int = Field(default=90, ge=1)
    s3_media_outbound_retention_days: int = Field(default=30, ge=1)
    # Raw webhooks move to a colder tier after ``s3_cold_after_days`` only when one is named: an S3
    # storage class (``GLACIER``, ``STANDARD_IA``) or a MinIO remote tier (``mc ilm tier add``).
    # A plain MinIO has no tier and refuses a transition rule that names one it does not know.
    s3_cold_tier: str | None = None
    s3_cold_after_days: int = Field(default=7, ge=1)
    media_url_expiry_s: int = Field(default=3600, ge=60)
    # Media bytes one worker holds in memory at once across its downloads (5 files at the 25 MB cap).
    media_memory_budget_bytes: int = Field(default=128 * 1024 * 1024, ge=25 * 1024 * 1024)

    # --- PostgreSQL ----------------------------------------------------------------------------
    postgres_dsn: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/wabridge")
    # Schema holding the tables; tests use one each.
    postgres_schema: str = "public"

    # --- Redis ---------------------------------------------------------------------------------
    # A secret: a deployment's URL carries the password (redis://:password@host, or rediss:// for TLS).
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    # Prepended to the seed's keys (``mapping:wa:…``); empty in production, unique per test.
    redis_key_prefix: str = ""

    # --- RabbitMQ ------------------------------------------------------------------------------
    rabbitmq_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    rabbitmq_queue_prefix: str = ""
    # Deliveries before a message goes to the dead-letter queue (quorum queue x-delivery-limit).
    rabbitmq_delivery_limit: int = Field(default=5, ge=1)
    rabbitmq_prefetch: int = Field(default=256, ge=1)

    # --- Secrets at rest -----------------------------------------------------------------------
    # Fernet key (urlsafe base64, 32 bytes) that encrypts tenant credentials in PostgreSQL.
    # A keyring: comma-separated Fernet keys. The first encrypts; every one decrypts, so a new key
    # goes first, the old ones stay after it until `wabridge tenants rotate-key` has re-encrypted
    # every stored secret (README, "Security").
    secrets_key: SecretStr | None = None
    # The deployment token every request to a worker's web server carries (``streams.internal_auth``):
    # State API, /auth/token, table views, forwarding between workers. Unset → they refuse everything.
    internal_token: SecretStr | None = None

    # --- Processes -----------------------------------------------------------------------------
    webhook_host: str = "127.0.0.1"
    webhook_port: int = 3009
    # Meta sends payloads up to 3 MB; anything above this is refused with 413.
    webhook_max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=3 * 1024 * 1024)
    # Per-tenant webhooks per minute (``ratelimit:{tenantId}:{minute}``).
    webhook_rate_limit_per_minute: int = Field(default=600_000, ge=1)
    # Overload: at most this many webhooks are worked on at once; a request that finds no room
    # within the admission wait is answered 503 with Retry-After (Meta retries) instead of queueing
    # for tens of seconds. 128 is ~4x what the edge holds at its measured ceiling (~330/s at ~0.1 s).
    webhook_max_in_flight: int = Field(default=128, ge=1)
    webhook_admission_wait_s: float = Field(default=0.25, ge=0)
    # What a stranger can hold of the webhook port before a signature is checked
    # (connectors/connection_guard.py). A request's body is read under a deadline of
    # webhook_body_timeout_s plus its declared size at webhook_min_body_bytes_per_s (Meta's 3 MB
    # then has 56 s), before it takes one of the webhook_max_in_flight work slots.
    webhook_max_connections: int = Field(default=4096, ge=1)
    # Connections one client address may hold; 0 (the default): no per-address cap. Behind a load
    # balancer or ingress every connection comes from its address, and the cap belongs there; set it
    # where the edge faces the internet itself. (A cap of 256 closed connections of `wabridge bench`
    # at 200 msg/s, one address, in the run of 2026-12-08.)
    webhook_max_connections_per_address: int = Field(default=0, ge=0)
    webhook_header_timeout_s: float = Field(default=10.0, gt=0)
    webhook_body_timeout_s: float = Field(default=10.0, gt=0)
    webhook_min_body_bytes_per_s: int = Field(default=64 * 1024, ge=1)
    webhook_keepalive_s: float = Field(default=5.0, gt=0)
    # The edge's operations listener: /healthz, /readyz, /metrics. The webhook port serves only
    # /webhook/*, so what Meta and Genesys reach shows no dependency, tenant or metric.
    webhook_ops_host: str = "127.0.0.1"
    webhook_ops_port: int = 3010
    worker_host: str = "127.0.0.1"
    worker_port: int = 3005
    # URL other workers use to reach this one's web server (table_route forwards there);
    # default http://{worker_host}:{worker_port}, which is wrong when binding 0.0.0.0.
    worker_canonical_url: str | None = None
    # The bridge's /healthz, /readyz and /metrics.
    bridge_host: str = "127.0.0.1"
    bridge_metrics_port: int = 3011
    sim_meta_host: str = "127.0.0.1"
    sim_meta_port: int = 3101
    sim_genesys_host: str = "127.0.0.1"
    sim_genesys_port: int = 3102
    # The newest Graph API version Meta has released; its end date and those of the others are in
    # connectors/graph_versions.py, which warns at start when the configured one ends within 90 days.
    meta_graph_version: str = "v26.0"
    # Agent attachments are fetched only from the tenant's Genesys API host and these origins
    # (comma-separated scheme://host[:port], https, public addresses): where a deployment's Genesys
    # download links redirect to (connectors/attachments.py).
    genesys_attachment_origins: str = ""
    # Origins allowed over plain http and on private addresses: the embedded stack's Genesys
    # simulator (`wabridge run` sets it). Empty in production.
    genesys_attachment_insecure_origins: str = ""
    # Sends per second per WhatsApp business number, per worker (Meta's default throughput is 80;
    # 1,000 after an upgrade; 20 for numbers shared with the WhatsApp Business app). With several
    # workers each paces its own share: set this to the number's limit divided by the workers.
    whatsapp_sends_per_second: float = Field(default=80.0, gt=0)

    # --- Embedded development stack ------------------------------------------------------------
    state_dir: Path = Path(".wabridge")
    log_level: str = "INFO"
    # text for people at a terminal; json (one object per line) for log shippers (docker-compose).
    log_format: Literal["text", "json"] = "text"

    def topic(self, name: str) -> str:
        """The full name of a stage topic (or consumer group) under this deployment's prefix."""
        return f"{self.kafka_topic_prefix}{name}"

    def queue(self, name: str) -> str:
        return f"{self.rabbitmq_queue_prefix}{name}"

    def redis_key(self, key: str) -> str:
        return f"{self.redis_key_prefix}{key}"
