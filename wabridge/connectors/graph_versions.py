"""Meta Graph API versions and when each stops working: the one table, and the check every process runs.

Meta retires a Graph API version two years after its successor's release; after that, calls to it
fall through to the oldest version still available, so behaviour changes without an error
(Meta, "Platform Versioning", developers.facebook.com/docs/graph-api/guides/versioning; the dates
below as recorded in ``reference/whatsapp-cloud-api.md``, "Checked 2026-12-07").

``DEFAULT_GRAPH_VERSION`` is the newest version Meta has released (v26.0, 2026-07-29). Its end is not
set until its successor is released, and is then at least two years away: it counts as
``UNRELEASED_SUCCESSOR_DAYS`` days left.

What moved between v21.0 and v26.0 on the calls we make (checked against the changelogs of the
Cloud API clients that moved across them, 2026-12): v24.0 adds ``message_status`` to each entry of a
send's ``messages[]`` (we read only ``messages[0].id``); v25.0 makes a send's ``contacts[].wa_id``
optional, since a send by BSUID (``recipient``) has none (``meta_graph._accepted`` reads it as
optional), and makes ``messages[].from_user_id`` / ``contacts[].user_id`` present on every inbound
message (``schemas.meta`` reads both). Media, uploads, the typing indicator and the template list
are unchanged.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

from prometheus_client import Gauge

from wabridge.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_GRAPH_VERSION: str = Settings.model_fields["meta_graph_version"].default

# version -> the last day Meta serves it. The newest version has no end until its successor ships.
GRAPH_VERSION_ENDS: dict[str, date | None] = {
    "v20.0": date(2026, 9, 24),
    "v21.0": date(2027, 1, 21),
    "v22.0": date(2027, 5, 1),  # "May 2027": the day is not in our source, so the first (warn early)
    "v23.0": date(2027, 10, 8),
    "v24.0": date(2028, 2, 18),
    "v25.0": date(2028, 7, 29),
    "v26.0": None,
}
# The newest version lives at least two years after a successor that is not released yet.
UNRELEASED_SUCCESSOR_DAYS = 730
# Warn this many days ahead: enough for a change, a test run and a release.
WARN_DAYS = 90

DAYS_LEFT = Gauge(
    "wabridge_meta_graph_version_days_left",
    "Days until Meta stops serving the configured Graph API version (the alert warns under 90)",
    ["version"],
)


def days_left(version: str, today: date) -> int | None:
    """Days from ``today`` until ``version`` ends (negative once it has); None for a version we
    have no date for (a newer one than this table, or a typo)."""
    if version not in GRAPH_VERSION_ENDS:
        return None
    end = GRAPH_VERSION_ENDS[version]
    return UNRELEASED_SUCCESSOR_DAYS if end is None else (end - today).days


def check_graph_version(version: str, now: datetime | None = None) -> int | None:
    """Log a warning when ``version`` ends within ``WARN_DAYS`` (an error once it has ended), and
    export the days left; every process calls this as it starts. Returns the days left."""
    today = (now or datetime.now(UTC)).date()
    left = days_left(version, today)
    if left is None:
        log.warning(
            "Meta Graph API version %s is not in wabridge's table of end dates (newest known: %s); "
            "no end-of-life warning can be given for it", version, DEFAULT_GRAPH_VERSION,
        )  # fmt: skip
        return None
    DAYS_LEFT.clear()
    # Computed at every scrape: a process that runs for months still counts down.
    DAYS_LEFT.labels(version).set_function(lambda: days_left(version, datetime.now(UTC).date()) or 0)
    end = GRAPH_VERSION_ENDS[version]
    if left < 0:
        log.error(
            "Meta Graph API version %s ended on %s: Meta now answers with its oldest version. "
            "Set WABRIDGE_META_GRAPH_VERSION=%s", version, end, DEFAULT_GRAPH_VERSION,
        )  # fmt: skip
    elif left <= WARN_DAYS:
        log.warning(
            "Meta Graph API version %s ends on %s, in %d days. Set WABRIDGE_META_GRAPH_VERSION=%s "
            "(or leave it unset for the default) before then", version, end, left, DEFAULT_GRAPH_VERSION,
        )  # fmt: skip
    return left
