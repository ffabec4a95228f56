"""Exact decimal input and output for money, prices and quantities.

``StrictDecimalField`` accepts a JSON number (already an exact ``Decimal`` thanks to ``StrictJSONParser``), an
``int``, or a string of ASCII digits with an optional sign and one decimal point. It rejects, never rounds:
exponents (``1e3``), underscores (``1_000``), non-ASCII digits (full-width digits), whitespace, booleans, NaN/Infinity,
more fractional digits than the field allows, and values outside its bounds. Output is always a string.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from rest_framework import serializers

_DECIMAL_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?", re.ASCII)


def parse_exact_decimal(value: Any) -> Decimal:
    """Parse ``value`` into a finite Decimal exactly, or raise ``ValueError`` with the rule broken."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        from apps.core.parsers import ExponentDecimal

        if isinstance(value, ExponentDecimal):
            raise ValueError("exponent notation is not accepted; write the number out in full")
        if not value.is_finite():
            raise ValueError("must be finite")
        return value
    if isinstance(value, float):
        # Only reachable when a caller bypassed the strict parser; a float has already lost exactness.
        raise ValueError("binary floating point is not accepted")
    if isinstance(value, str):
        if len(value) > 64 or not _DECIMAL_TEXT.fullmatch(value):
            raise ValueError("must be a plain decimal number (ASCII digits, optional '-' and '.')")
        try:
            return Decimal(value)
        except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid literals
            raise ValueError("is not a decimal number") from exc
    raise ValueError("must be a number or a decimal string")


def fraction_digits(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


class StrictDecimalField(serializers.Field[Decimal, Any, str | None, Any]):
    """A decimal field that never rounds and never passes through float."""

    default_error_messages = {
        "invalid": "{reason}.",
        "max_decimal_places": "Ensure that there are no more than {max_decimal_places} decimal places.",
        "min_value": "Ensure this value is greater than or equal to {min_value}.",
        "max_value": "Ensure this value is less than or equal to {max_value}.",
        "positive": "Ensure this value is greater than zero.",
    }

    def __init__(
        self,
        *,
        decimal_places: int,
        min_value: Decimal | None = None,
        max_value: Decimal | None = None,
        positive: bool = False,
        **kwargs: Any,
    ) -> None:
        self.decimal_places = decimal_places
        self.min_value = min_value
        self.max_value = max_value
        self.positive = positive
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Decimal:
        try:
            value = parse_exact_decimal(data)
        except ValueError as exc:
            self.fail("invalid", reason=str(exc))
        if fraction_digits(value) > self.decimal_places:
            self.fail("max_decimal_places", max_decimal_places=self.decimal_places)
        if self.positive and value <= 0:
            self.fail("positive")
        if self.min_value is not None and value < self.min_value:
            self.fail("min_value", min_value=self.min_value)
        if self.max_value is not None and value > self.max_value:
            self.fail("max_value", max_value=self.max_value)
        return value.normalize() if value == value.to_integral_value() else value

    def to_representation(self, value: Any) -> str | None:
        if value is None:
            return None
        return format_decimal(Decimal(value))


def format_decimal(value: Decimal) -> str:
    """Render without exponent and without trailing zeros: ``Decimal('10.500')`` → ``"10.5"``."""
    normalized = value.normalize()
    if normalized.is_zero():
        return "0"
    if normalized == normalized.to_integral_value():
        return str(normalized.quantize(Decimal(1)))
    return f"{normalized:f}"
