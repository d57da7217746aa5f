"""Phone numbers never appear in full in logs."""

from __future__ import annotations

import pytest

from wabridge.masking import keyed_hash, mask_customer_id, mask_key, mask_phone


def test_mask_phone_keeps_prefix_and_last_two() -> None:
    assert mask_phone("16505551234") == "1650*****34"
    assert mask_phone("+447700900123") == "+4477******23"


@pytest.mark.parametrize("number", ["16505551234", "+447700900123", "5511987654321", "4915123456789"])
def test_masked_phone_hides_the_middle(number: str) -> None:
    masked = mask_phone(number)
    assert len(masked) == len(number)
    assert number not in masked
    digits = number.lstrip("+")
    # the subscriber part (all but the first 4 and last 2 digits) is gone
    assert digits[4:-2] not in masked.lstrip("+")


@pytest.mark.parametrize("short", ["", "123", "12345678"])
def test_short_values_are_fully_masked(short: str) -> None:
    assert set(mask_phone(short)) <= {"*"}


def test_customer_ids_and_keys() -> None:
    assert mask_customer_id("16505551234") == mask_phone("16505551234")
    bsuid = "US.13491208655302741918"
    masked = mask_customer_id(bsuid)
    assert masked.startswith("US.") and masked.endswith("18") and "13491208655302741" not in masked
    assert mask_key("acme:16505551234") == "acme:1650*****34"


def test_keyed_hash_is_stable_keyed_and_not_the_number() -> None:
    first = keyed_hash("16505551234", b"k1")
    assert first == keyed_hash("16505551234", b"k1")
    assert first != keyed_hash("16505551234", b"k2")
    assert first != keyed_hash("16505551235", b"k1")
    assert "16505551234" not in first and len(first) == 16
    with pytest.raises(ValueError, match="non-empty key"):
        keyed_hash("16505551234", b"")
