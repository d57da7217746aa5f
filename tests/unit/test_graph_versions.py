"""The Graph API version check: a warning and the days left when the configured version ends soon."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

import pytest
from prometheus_client import REGISTRY

from wabridge.connectors.graph_versions import (
    DEFAULT_GRAPH_VERSION,
    GRAPH_VERSION_ENDS,
    check_graph_version,
    days_left,
)
from wabridge.settings import Settings


def exported(version: str) -> float | None:
    return REGISTRY.get_sample_value("wabridge_meta_graph_version_days_left", {"version": version})


def test_a_version_ending_within_90_days_is_warned_of_and_exported(caplog: pytest.LogCaptureFixture) -> None:
    fixed = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)  # v21.0 ends 2027-01-21
    with caplog.at_level(logging.WARNING, logger="wabridge.connectors.graph_versions"):
        left = check_graph_version("v21.0", now=fixed)
    assert left == 44
    assert any("v21.0 ends on 2027-01-21, in 44 days" in r.getMessage() for r in caplog.records)
    assert exported("v21.0") is not None  # counted from the real clock at scrape time


def test_a_version_far_from_its_end_is_not_warned_of(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="wabridge.connectors.graph_versions"):
        left = check_graph_version("v24.0", now=datetime(2026, 12, 8, tzinfo=UTC))
    assert left is not None and left > 90
    assert not caplog.records
    assert exported("v24.0") is not None and exported("v21.0") is None  # only the configured one


def test_an_ended_version_is_an_error(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="wabridge.connectors.graph_versions"):
        check_graph_version("v20.0", now=datetime(2026, 12, 8, tzinfo=UTC))
    assert [r.levelno for r in caplog.records] == [logging.ERROR]


def test_an_unknown_version_says_no_warning_can_be_given(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="wabridge.connectors.graph_versions"):
        assert check_graph_version("v99.0") is None
    assert "not in wabridge's table" in caplog.text


def test_the_default_version_is_the_settings_default_and_far_from_its_end_today() -> None:
    assert Settings().meta_graph_version == DEFAULT_GRAPH_VERSION
    left = days_left(DEFAULT_GRAPH_VERSION, date.today())
    assert left is not None and left > 180
    # The default is the newest in the table: no version after it has an end date yet.
    newest = max(GRAPH_VERSION_ENDS, key=lambda v: float(v.removeprefix("v")))
    assert newest == DEFAULT_GRAPH_VERSION
