"""One exception root; the type says whether to retry, decided where the error is understood."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime


class WabridgeError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigurationError(WabridgeError):
    """The settings or a tenant's configuration cannot work; an operator must fix it."""


class TransientError(WabridgeError):
    """Worth retrying with backoff; ``retry_after`` (seconds) when the peer said how long to wait."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TenantHeld(TransientError):
    """What an operator must fix for one tenant (credentials refused, tenant disabled, not configured).

    Not a failure of the message: the tenant's work waits, probed now and then, and flows once it
    is fixed; other tenants are not held up. ``reason`` is a fixed label for logs and metrics; its
    first word is the hold's :attr:`scope`: ``genesys_…`` holds only the work that needs Genesys,
    ``whatsapp_…`` only the work that needs the tenant's WhatsApp token, ``tenant_…`` all of it.
    """

    def __init__(self, message: str, *, tenant_id: str, reason: str, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.tenant_id = tenant_id
        self.reason = reason

    @property
    def scope(self) -> str:
        return self.reason.split("_", 1)[0]


def retry_after_seconds(value: str | None) -> float | None:
    """An HTTP ``Retry-After`` value as seconds from now: a number, or an HTTP date; None if neither."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class PermanentError(WabridgeError):
    """Retrying cannot help: route the record to ERROR_EVENTS with ``reason``."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
