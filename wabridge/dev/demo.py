"""The demo tenant of the embedded stack: development values only, wired to the two simulators."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pydantic import SecretStr

from wabridge.connectors import postgres
from wabridge.settings import Settings
from wabridge.tenants import PhoneNumber, SecretBox, Tenant, TenantConfig, TenantSecrets, TenantStore


@dataclass(frozen=True)
class DemoTenant:
    tenant_id: str = "demo"
    name: str = "Demo Business (development)"
    phone_number_id: str = "100000000000001"
    display_phone_number: str = "15550000001"
    waba_id: str = "200000000000001"
    app_secret: str = "dev-app-secret-not-for-production"
    verify_token: str = "dev-verify-token"
    whatsapp_token: str = "dev-whatsapp-token-not-for-production"
    genesys_integration_id: str = "00000000-0000-4000-8000-000000000001"
    genesys_client_id: str = "dev-genesys-client"
    genesys_client_secret: str = "dev-genesys-secret-not-for-production"
    genesys_webhook_secret: str = "dev-genesys-webhook-secret-not-for-production"

    def tenant(self, settings: Settings) -> Tenant:
        simulated_genesys = f"http://{settings.sim_genesys_host}:{settings.sim_genesys_port}"
        return Tenant(
            id=self.tenant_id,
            name=self.name,
            phone_numbers=(
                PhoneNumber(
                    phone_number_id=self.phone_number_id,
                    display_phone_number=self.display_phone_number,
                    waba_id=self.waba_id,
                ),
            ),
            config=TenantConfig(
                genesys_region="mypurecloud.com",
                genesys_client_id=self.genesys_client_id,
                genesys_integration_id=self.genesys_integration_id,
                genesys_api_url=simulated_genesys,
                genesys_login_url=simulated_genesys,
                meta_graph_url=f"http://{settings.sim_meta_host}:{settings.sim_meta_port}",
            ),
            secrets=TenantSecrets(
                meta_app_secret=SecretStr(self.app_secret),
                meta_verify_token=SecretStr(self.verify_token),
                meta_access_token=SecretStr(self.whatsapp_token),
                genesys_client_secret=SecretStr(self.genesys_client_secret),
                genesys_webhook_secret=SecretStr(self.genesys_webhook_secret),
            ),
        )

    def simulator_configs(self, settings: Settings) -> dict[str, dict[str, Any]]:
        """What the two simulators must know of the demo tenant (the shape of ``PUT /__sim/config``)."""
        edge = f"http://{settings.webhook_host}:{settings.webhook_port}"
        meta = {
            "phone_numbers": [
                {
                    "phone_number_id": self.phone_number_id,
                    "display_phone_number": self.display_phone_number,
                    "waba_id": self.waba_id,
                    "access_token": self.whatsapp_token,
                    "app_secret": self.app_secret,
                    "webhook_url": f"{edge}/webhook/meta",
                }
            ],
            # The WhatsApp Business Account's templates an agent can send from Genesys.
            "templates": [
                {
                    "waba_id": self.waba_id,
                    "name": "order_update",
                    "category": "UTILITY",
                    "components": [{"type": "BODY", "text": "Hi {{1}}, your order {{2}} is on its way."}],
                },
                {
                    "waba_id": self.waba_id,
                    "name": "spring_sale",
                    "category": "MARKETING",
                    "components": [{"type": "BODY", "text": "Spring sale, {{1}}: 20% off this week."}],
                },
            ],
        }
        genesys = {
            "clients": [{"client_id": self.genesys_client_id, "client_secret": self.genesys_client_secret}],
            "integrations": [
                {
                    "integration_id": self.genesys_integration_id,
                    "outbound_webhook_url": f"{edge}/webhook/genesys",
                    "outbound_webhook_secret": self.genesys_webhook_secret,
                }
            ],
        }
        return {"sim_meta": meta, "sim_genesys": genesys}

    def as_status(self, settings: Settings) -> dict[str, Any]:
        values = asdict(self)
        values.pop("name")
        return values


DEMO_TENANT = DemoTenant()


async def seed_demo_tenant(settings: Settings) -> None:
    """Create or refresh the demo tenant through the same store that `wabridge tenants` uses."""
    pool = await postgres.connect(settings, min_size=1, max_size=1)
    try:
        await TenantStore(pool, SecretBox.from_settings(settings)).upsert(DEMO_TENANT.tenant(settings))
    finally:
        await pool.close()
