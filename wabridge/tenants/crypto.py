"""Tenant secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) with the key from the settings."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

from wabridge.errors import ConfigurationError
from wabridge.settings import Settings


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


class SecretBox:
    """Encrypts and decrypts tenant credentials; built once per process from the settings."""

    def __init__(self, key: SecretStr | None) -> None:
        if key is None:
            raise ConfigurationError(
                "WABRIDGE_SECRETS_KEY is not set: tenant credentials are encrypted at rest and need it. "
                "Generate one with `wabridge tenants generate-key` and keep it in your secret store."
            )
        try:
            self._fernet = Fernet(key.get_secret_value().encode("ascii"))
        except ValueError as exc:
            raise ConfigurationError(
                "WABRIDGE_SECRETS_KEY is not a valid key (32 url-safe base64-encoded bytes)"
            ) from exc

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        return cls(settings.secrets_key)

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken as exc:
            raise ConfigurationError(
                "a tenant credential cannot be decrypted with WABRIDGE_SECRETS_KEY (wrong key?)"
            ) from exc
