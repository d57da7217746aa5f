"""Secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) under a keyring from the settings.

``WABRIDGE_SECRETS_KEY`` holds one key or several, comma-separated: the first encrypts, every one
decrypts (cryptography's ``MultiFernet``). Rotation, with nothing undecryptable at any moment:

1. put a new key first, keep the old one after it, and restart every process;
2. run ``wabridge tenants rotate-key``: every stored secret is re-encrypted with the new key and
   the Redis caches that hold encrypted copies are dropped (they are rebuilt from PostgreSQL);
3. remove the old key and restart again.

What it encrypts: tenant credentials in PostgreSQL, and their cached copies in Redis (tenant
configuration, WhatsApp and Genesys access tokens).
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from wabridge.errors import ConfigurationError
from wabridge.settings import Settings


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


class SecretBox:
    """Encrypts and decrypts secrets; built once per process from the settings."""

    def __init__(self, key: SecretStr | None) -> None:
        if key is None:
            raise ConfigurationError(
                "WABRIDGE_SECRETS_KEY is not set: tenant credentials are encrypted at rest and need it. "
                "Generate one with `wabridge tenants generate-key` and keep it in your secret store."
            )
        keys = [part.strip() for part in key.get_secret_value().split(",") if part.strip()]
        if not keys:
            raise ConfigurationError("WABRIDGE_SECRETS_KEY is empty")
        fernets = []
        for position, value in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(value.encode("ascii")))
            except (ValueError, UnicodeEncodeError) as exc:
                # The position, never the value: a key must not reach a log.
                raise ConfigurationError(
                    f"WABRIDGE_SECRETS_KEY: key {position} of {len(keys)} is not a valid key "
                    "(32 url-safe base64-encoded bytes)"
                ) from exc
        self._current = fernets[0]
        self._ring = MultiFernet(fernets)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        return cls(settings.secrets_key)

    def encrypt(self, value: str) -> str:
        return self._ring.encrypt(value.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._ring.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeEncodeError) as exc:
            raise ConfigurationError(
                "a stored secret cannot be decrypted with any key of WABRIDGE_SECRETS_KEY (wrong or removed key?)"
            ) from exc

    def rotate(self, token: str) -> str:
        """``token`` re-encrypted with the first key (it may have been made with any key of the ring)."""
        try:
            return self._ring.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeEncodeError) as exc:
            raise ConfigurationError(
                "a stored secret cannot be decrypted with any key of WABRIDGE_SECRETS_KEY, so it cannot be rotated"
            ) from exc

    def is_current(self, token: str) -> bool:
        """Whether ``token`` was encrypted with the first key (rotation is done for it)."""
        try:
            self._current.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            return False
        return True
