"""Metric labels come from fixed sets, whatever Meta, Genesys or a webhook sender put in a reason."""

from __future__ import annotations

import pytest

from wabridge.errors import metric_reason


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("tenant_inactive", "tenant_inactive"),
        ("invalid_message", "invalid_message"),
        ("meta_error_131047", "meta_error_131047"),
        ("meta_error_131056", "meta_error_131056"),
        ("meta_error_987654321", "meta_error_other"),
        ("meta_business_error_132012", "meta_business_error_132012"),
        ("meta_http_503", "meta_http_503"),
        ("meta_http_599", "meta_http_other"),
        ("genesys_400_bad.request", "genesys_400"),
        ("genesys_400_" + "x" * 5000, "genesys_400"),
        ("genesys_418_i.am.a.teapot\nforged", "genesys_other"),
        ("Robert'); DROP TABLE students;--", "other"),
        ("a" * 500, "other"),
        ("", "other"),
    ],
)
def test_a_reason_becomes_a_label_from_a_fixed_set(reason: str, label: str) -> None:
    assert metric_reason(reason) == label


def test_any_number_of_distinct_peer_codes_makes_a_bounded_number_of_labels() -> None:
    labels = {metric_reason(f"meta_error_{code}") for code in range(100_000, 200_000)}
    labels |= {metric_reason(f"genesys_{status}_{status * 7}") for status in range(100, 1000)}
    assert len(labels) < 60
