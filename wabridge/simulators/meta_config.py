"""What the Meta simulator knows about its tenants: business phone numbers, tokens, app secrets.

The same shapes come from constructor arguments, ``wabridge sim meta --config FILE`` and the admin
API (``PUT /__sim/config``, ``PUT /__sim/phone-numbers/{id}``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from wabridge.simulators.meta_templates import MetaTemplate

# Cloud API default throughput per business number (reference: 80 messages/s).
DEFAULT_MESSAGES_PER_SECOND = 80
# Media download URLs expire after 5 minutes (reference).
DEFAULT_MEDIA_URL_TTL_S = 300.0
# The customer service window: free-form messages only within 24 h of the customer's last message.
SERVICE_WINDOW_S = 24 * 3600.0


class MetaPhoneNumber(BaseModel):
    """One WhatsApp business number of a tenant and where Meta sends its webhooks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    phone_number_id: str = Field(min_length=1)
    display_phone_number: str = "15550783881"
    waba_id: str = "102290129340398"
    # The Bearer token the tenant calls the Graph API with; numbers of one tenant may share it.
    access_token: SecretStr
    # Signs webhooks: X-Hub-Signature-256 = sha256=<hex HMAC-SHA256(app_secret, raw body)>.
    app_secret: SecretStr
    webhook_url: str | None = None
    messages_per_second: int = Field(default=DEFAULT_MESSAGES_PER_SECOND, ge=1)
    # Off: every recipient counts as inside the 24-hour window (no 131047).
    enforce_service_window: bool = True


class MetaSimConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    phone_numbers: list[MetaPhoneNumber] = Field(default_factory=list)
    # Every WABA's message templates (``MetaTemplate.waba_id``): a template send names one of them.
    templates: list[MetaTemplate] = Field(default_factory=list)
    media_url_ttl_s: float = Field(default=DEFAULT_MEDIA_URL_TTL_S, gt=0)
    service_window_s: float = Field(default=SERVICE_WINDOW_S, gt=0)
    # Seconds after the send at which each status webhook goes out; read is skipped when None.
    sent_after_s: float = Field(default=0.0, ge=0)
    delivered_after_s: float = Field(default=0.02, ge=0)
    read_after_s: float | None = Field(default=0.05, ge=0)
    # Meta retries a webhook that did not get 200 (for days; here a few times, quickly).
    webhook_retries: int = Field(default=3, ge=0)
    webhook_retry_delay_s: float = Field(default=0.5, ge=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
