"""One exception root; the type says whether to retry, decided where the error is understood."""

from __future__ import annotations


class WabridgeError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigurationError(WabridgeError):
    """The settings or a tenant's configuration cannot work; an operator must fix it."""


class TransientError(WabridgeError):
    """Worth retrying with backoff; ``retry_after`` (seconds) when the peer said how long to wait."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(WabridgeError):
    """Retrying cannot help: route the record to ERROR_EVENTS with ``reason``."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
