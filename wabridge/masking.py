"""Phone numbers and customer ids for logs: masked for people, keyed-hashed for correlation.

A log line never carries a full phone number (ARCHITECTURE, invariant 5). ``mask_phone`` keeps
enough to tell numbers apart by eye (country prefix, last two digits); ``keyed_hash`` gives a stable,
non-reversible token to follow one customer across log lines without exposing the number.
"""

from __future__ import annotations

import hashlib
import hmac

_KEEP_HEAD = 4
_KEEP_TAIL = 2
# Below this many digits there is nothing safe to show.
_MIN_LENGTH_TO_SHOW = _KEEP_HEAD + _KEEP_TAIL + 3


def mask_phone(number: str | None) -> str:
    """``"16505551234"`` -> ``"1650*****34"``; a leading ``+`` is kept; short values are fully masked."""
    if not number:
        return ""
    prefix = "+" if number.startswith("+") else ""
    digits = number[len(prefix) :]
    if len(digits) < _MIN_LENGTH_TO_SHOW:
        return prefix + "*" * len(digits)
    hidden = len(digits) - _KEEP_HEAD - _KEEP_TAIL
    return prefix + digits[:_KEEP_HEAD] + "*" * hidden + digits[-_KEEP_TAIL:]


def mask_customer_id(customer_id: str | None) -> str:
    """A wa_id is masked as a phone number; a BSUID (``"US.1349..."``) keeps its country prefix only."""
    if not customer_id:
        return ""
    if customer_id.lstrip("+").isdigit():
        return mask_phone(customer_id)
    head, dot, rest = customer_id.partition(".")
    if dot and head.isalpha() and len(head) <= 3:
        return f"{head}.{'*' * max(len(rest) - _KEEP_TAIL, 0)}{rest[-_KEEP_TAIL:]}"
    return "*" * max(len(customer_id) - _KEEP_TAIL, 0) + customer_id[-_KEEP_TAIL:]


def mask_key(key: str) -> str:
    """A stage-topic key ``tenant_id:customer_id`` with the customer part masked."""
    tenant, sep, customer = key.partition(":")
    if not sep:
        return mask_customer_id(key)
    return f"{tenant}:{mask_customer_id(customer)}"


def keyed_hash(value: str, key: bytes, *, length: int = 16) -> str:
    """HMAC-SHA256 of ``value`` under ``key``, hex, first ``length`` characters.

    Keyed, so that the 10^10-ish phone numbers of a country cannot be brute-forced from a log line.
    """
    if not key:
        raise ValueError("keyed_hash needs a non-empty key")
    digest = hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[:length]


def loggable(value: object, limit: int = 80) -> str:
    """An untrusted value (an id from a request not yet authenticated) made safe for one log line.

    Control characters, newlines included, and non-ASCII are escaped, so a value cannot forge a
    line or a field; anything past ``limit`` characters is cut.
    """
    text = str(value)
    cut = len(text) > limit
    escaped = text[:limit].encode("unicode_escape").decode("ascii")
    return escaped + "..." if cut else escaped
