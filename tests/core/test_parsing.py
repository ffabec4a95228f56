"""Strict JSON parsing and exact decimal fields: the money-parsing failure modes of ARCHITECTURE §2."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from rest_framework import serializers

from apps.core.errors import MalformedRequest
from apps.core.fields import StrictDecimalField, format_decimal
from apps.core.parsers import loads_strict


class PriceSerializer(serializers.Serializer[Any]):
    price = StrictDecimalField(decimal_places=2, positive=True, max_value=Decimal("1000000"))


def test_json_numbers_are_exact_decimals() -> None:
    value = loads_strict(b'{"qty": 9999999999999999.01, "n": 10, "f": 10.0}')
    assert value == {"qty": Decimal("9999999999999999.01"), "n": 10, "f": Decimal("10.0")}
    assert isinstance(value["qty"], Decimal)
    assert isinstance(value["n"], int)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        pytest.param(b'{"qty": 1, "qty": 2}', "duplicate_key", id="duplicate-key"),
        pytest.param(b'{"a": {"qty": 1, "qty": 2}}', "duplicate_key", id="nested-duplicate-key"),
        pytest.param(b'{"qty": NaN}', "malformed_json", id="nan"),
        pytest.param(b'{"qty": Infinity}', "malformed_json", id="infinity"),
        pytest.param(b'{"qty": 1', "malformed_json", id="truncated"),
        pytest.param(b'{"qty": "\xff"}', "invalid_encoding", id="bad-utf8"),
        pytest.param(b"[" * 20 + b"]" * 20, "too_deep", id="deep-nesting"),
        pytest.param(b"[" * 100000 + b"]" * 100000, "too_deep", id="very-deep-nesting"),
    ],
)
def test_malformed_bodies_are_rejected(raw: bytes, error: str) -> None:
    with pytest.raises(MalformedRequest) as info:
        loads_strict(raw)
    assert info.value.error == error
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(Decimal("10.25"), Decimal("10.25"), id="json-number"),
        pytest.param("10.25", Decimal("10.25"), id="string"),
        pytest.param(10, Decimal("10"), id="int"),
        pytest.param("10.50", Decimal("10.50"), id="trailing-zero-within-precision"),
        pytest.param(
            Decimal("10.000"), Decimal("10"), id="trailing-zeros-beyond-precision-are-not-precision"
        ),
    ],
)
def test_decimal_field_accepts(value: object, expected: Decimal) -> None:
    s = PriceSerializer(data={"price": value})
    assert s.is_valid(), s.errors
    assert s.validated_data["price"] == expected


@pytest.mark.parametrize(
    ("value", "code"),
    [
        pytest.param("1e3", "invalid", id="exponent"),
        pytest.param(loads_strict(b"[1e3]")[0], "invalid", id="exponent-json-number"),
        pytest.param(loads_strict(b"[1.5E-2]")[0], "invalid", id="exponent-json-number-fraction"),
        pytest.param("1_000", "invalid", id="underscore"),
        pytest.param("１２", "invalid", id="fullwidth-digits"),
        pytest.param("٣", "invalid", id="arabic-indic-digit"),
        pytest.param(" 12", "invalid", id="whitespace"),
        pytest.param("12.", "invalid", id="trailing-dot"),
        pytest.param(".5", "invalid", id="leading-dot"),
        pytest.param("+5", "invalid", id="plus-sign"),
        pytest.param("0x10", "invalid", id="hex"),
        pytest.param(True, "invalid", id="boolean"),
        pytest.param(1.5, "invalid", id="binary-float"),
        pytest.param(None, "null", id="null"),
        pytest.param([], "invalid", id="list"),
        pytest.param("10.001", "max_decimal_places", id="over-precise-string"),
        pytest.param(Decimal("10.001"), "max_decimal_places", id="over-precise-number"),
        pytest.param("0", "positive", id="zero"),
        pytest.param("-1", "positive", id="negative"),
        pytest.param("1000000.01", "max_value", id="too-large"),
        pytest.param("9" * 70, "invalid", id="absurdly-long"),
    ],
)
def test_decimal_field_rejects_without_rounding(value: object, code: str) -> None:
    s = PriceSerializer(data={"price": value})
    assert not s.is_valid()
    assert s.errors["price"][0].code == code


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(Decimal("10.500"), "10.5", id="trailing-zeros"),
        pytest.param(Decimal("1E+3"), "1000", id="exponent-form"),
        pytest.param(Decimal("0.000000001"), "0.000000001", id="tiny"),
        pytest.param(Decimal("-0"), "0", id="negative-zero"),
    ],
)
def test_format_decimal(value: Decimal, text: str) -> None:
    assert format_decimal(value) == text
