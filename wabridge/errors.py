"""One exception root; the type says whether to retry, decided where the error is understood."""

from __future__ import annotations

import re
import time
from email.utils import parsedate_to_datetime


class WabridgeError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigurationError(WabridgeError):
    """The settings or a tenant's configuration cannot work; an operator must fix it."""


class TransientError(WabridgeError):
    """Worth retrying with backoff; ``retry_after`` (seconds) when the peer said how long to wait.

    ``maybe_taken``: the request reached the peer and its answer was lost or an error (a timeout
    after sending, a 5xx), so the peer may have acted on it: retrying it is a resend, counted and
    logged as one (``agents.context.ResendWatch``)."""

    def __init__(self, message: str, *, retry_after: float | None = None, maybe_taken: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.maybe_taken = maybe_taken


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


# -- Reasons as metric labels ----------------------------------------------------------------------

# Meta error codes kept as they are in labels: the ones reference/whatsapp-cloud-api.md
# ("Throughput and errors") tells apart; any other code is counted as ``…_other``.
_META_CODES = frozenset(
    {0, 2, 4, 190, 80007, 130429, 131000, 131016, 131026, 131047, 131050, 131051, 131052, 131053, 131056, 131057}
    | set(range(132000, 132016))
)
_HTTP_STATUSES = frozenset({400, 401, 403, 404, 408, 409, 410, 413, 415, 422, 429, 500, 502, 503, 504})
_OWN_REASON = re.compile(r"[a-z][a-z_]{0,47}")
_META_REASON = re.compile(r"(meta_error|meta_business_error|meta)_(\d{1,9})")
_HTTP_REASON = re.compile(r"(meta_http|genesys)_(\d{3})(?:_.*)?", re.DOTALL)


def metric_reason(reason: str) -> str:
    """``reason`` as a metric label, from a fixed set whatever a peer answered.

    Our own reasons (lower-case words) stay. Reasons made of a peer's code are bucketed: a known
    Meta error code or HTTP status stays, any other becomes ``<prefix>_other``; the free text a
    Genesys error carries is dropped. Anything else is ``other``. Logs and error records keep the
    whole reason.
    """
    if _OWN_REASON.fullmatch(reason):
        return reason
    if meta := _META_REASON.fullmatch(reason):
        return reason if int(meta.group(2)) in _META_CODES else f"{meta.group(1)}_other"
    if http := _HTTP_REASON.fullmatch(reason):
        status = int(http.group(2))
        return f"{http.group(1)}_{status}" if status in _HTTP_STATUSES else f"{http.group(1)}_other"
    return "other"
