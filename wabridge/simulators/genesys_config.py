"""What the Genesys simulator knows about its tenants: OAuth clients and Open Messaging integrations.

Plain pydantic models so the same shapes come from constructor arguments, a JSON file given to
``wabridge sim genesys --config`` and the admin API (``PUT /__sim/config``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from wabridge.simulators.faults import FaultPlan

# Genesys's default per-client rate limit (reference: 300 requests/minute per client credential).
DEFAULT_RATE_LIMIT_PER_MINUTE = 300
# The default lifetime of a client-credentials token (Genesys: 86400 s).
DEFAULT_TOKEN_TTL_S = 86_400
# Attachments Genesys accepts (reference: up to 25 MB).
MAX_ATTACHMENT_BYTES = 25 * 1024 * 1024


class GenesysClient(BaseModel):
    """An OAuth client (client credentials grant) of one organization."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    organization_id: str = "sim-org"
    token_ttl_s: int = Field(default=DEFAULT_TOKEN_TTL_S, ge=1)
    # None: the simulator-wide limit applies; 0 switches limiting off for this client.
    rate_limit_per_minute: int | None = Field(default=None, ge=0)


class GenesysIntegration(BaseModel):
    """An Open Messaging integration and where Genesys posts its outbound webhooks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    integration_id: str = Field(min_length=1)
    organization_id: str = "sim-org"
    outbound_webhook_url: str | None = None
    outbound_webhook_secret: SecretStr | None = None
    # The name Genesys shows as the sender of agent messages (``channel.from.nickname``).
    nickname: str = "Sim Agent"


class GenesysSimConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    clients: list[GenesysClient] = Field(default_factory=list)
    integrations: list[GenesysIntegration] = Field(default_factory=list)
    # Per client credential; 0 switches rate limiting off (benchmarks).
    rate_limit_per_minute: int = Field(default=DEFAULT_RATE_LIMIT_PER_MINUTE, ge=0)
    # Delay before Genesys fetches an attachment (it does so shortly after accepting the message).
    attachment_fetch_delay_s: float = Field(default=0.0, ge=0)
    # After accepting an inbound message Genesys posts a ``Delivered`` receipt for it to the
    # integration's outbound webhook once the agent has it (the seed's sequence, step 12).
    inbound_receipts: bool = True
    # Outbound webhook delivery policy (reference: 10 s timeout, up to 5 retries 5 s apart).
    outbound_timeout_s: float = Field(default=10.0, gt=0)
    outbound_retries: int = Field(default=5, ge=0)
    outbound_retry_delay_s: float = Field(default=5.0, ge=0)
    faults_by_integration: dict[str, FaultPlan] = Field(default_factory=dict)
    faults_by_client: dict[str, FaultPlan] = Field(default_factory=dict)
