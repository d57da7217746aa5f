"""A tenant: one business, its WhatsApp numbers, its Meta app and its Genesys org."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

# Credential fields that are secret: encrypted in PostgreSQL, SecretStr in memory, masked on print.
SECRET_FIELDS: tuple[str, ...] = (
    "meta_app_secret",
    "meta_verify_token",
    "meta_access_token",
    "genesys_client_secret",
    "genesys_webhook_secret",
)

DEFAULT_GRAPH_URL = "https://graph.facebook.com"


class PhoneNumber(BaseModel):
    model_config = ConfigDict(frozen=True)

    phone_number_id: str
    display_phone_number: str
    # The WhatsApp Business Account the number belongs to: where its message templates are listed.
    waba_id: str | None = None


class TenantConfig(BaseModel):
    """The non-secret part, stored as JSONB in ``tenants.config``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Genesys region's domain, e.g. "mypurecloud.com", "mypurecloud.ie", "usw2.pure.cloud".
    genesys_region: str = "mypurecloud.com"
    genesys_client_id: str = ""
    genesys_integration_id: str = ""
    # Overrides for a non-standard host (the Genesys simulator serves both on one port).
    genesys_api_url: str | None = None
    genesys_login_url: str | None = None
    meta_graph_url: str = DEFAULT_GRAPH_URL
    # Webhooks per minute for this tenant; None uses the deployment default.
    rate_limit_per_minute: int | None = Field(default=None, ge=1)
    # MARKETING templates go through Meta's Marketing Messages API (POST /{number}/marketing_messages)
    # once the tenant has onboarded to it in Meta's Business Manager; else through /messages.
    meta_marketing_messages_api: bool = False

    @property
    def genesys_api_base(self) -> str:
        return self.genesys_api_url or f"https://api.{self.genesys_region}"

    @property
    def genesys_login_base(self) -> str:
        """The login host is the API host with ``api.`` replaced by ``login.``."""
        return self.genesys_login_url or f"https://login.{self.genesys_region}"


class TenantSecrets(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    meta_app_secret: SecretStr
    meta_verify_token: SecretStr
    meta_access_token: SecretStr
    genesys_client_secret: SecretStr
    genesys_webhook_secret: SecretStr


class Tenant(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    name: str
    active: bool = True
    phone_numbers: tuple[PhoneNumber, ...] = ()
    config: TenantConfig = TenantConfig()
    secrets: TenantSecrets

    def waba_of(self, phone_number_id: str) -> str | None:
        """The WhatsApp Business Account of one of the tenant's numbers (where its templates live)."""
        return next((p.waba_id for p in self.phone_numbers if p.phone_number_id == phone_number_id), None)


def mask_secret(value: SecretStr) -> str:
    """Enough to recognise a secret, never enough to use it."""
    raw = value.get_secret_value()
    if len(raw) <= 8:
        return "*" * len(raw)
    return raw[:3] + "…" + raw[-2:] + f" ({len(raw)} chars)"
