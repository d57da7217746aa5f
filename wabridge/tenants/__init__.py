"""Tenants: who owns which WhatsApp numbers, and their Meta and Genesys credentials."""

from wabridge.tenants.crypto import SecretBox
from wabridge.tenants.models import PhoneNumber, Tenant, TenantConfig, TenantSecrets
from wabridge.tenants.store import TenantNotFound, TenantStore

__all__ = [
    "PhoneNumber",
    "SecretBox",
    "Tenant",
    "TenantConfig",
    "TenantNotFound",
    "TenantSecrets",
    "TenantStore",
]
