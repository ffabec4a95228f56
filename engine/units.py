"""Exact conversions between Decimal amounts and the engine's integer units.

Invariants:
- prices are int ticks of 1e-4 USD (``price_e4``); quantities are int units of 1e-9 shares (``qty_e9``);
  percentages are int basis points (``bps``, 1 bp = 0.01 %).
- Conversions never round: an input with more precision than the unit can carry raises ``UnitError``.
- Decimal -> int -> Decimal is the identity for every accepted input.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

PRICE_SCALE = 10_000  # price_e4: 1 tick = 0.0001 USD
QTY_SCALE = 1_000_000_000  # qty_e9: 1 unit = 1e-9 share
BPS_SCALE = 100  # 1 percent = 100 basis points

PRICE_EXP = -4
QTY_EXP = -9
BPS_EXP = -2


class UnitError(ValueError):
    """An amount cannot be represented exactly in the engine's integer units."""


def _to_int(value: Decimal, exp: int, what: str) -> int:
    if not isinstance(value, Decimal):
        raise UnitError(f"{what} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise UnitError(f"{what} must be finite, got {value}")
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    # Scale by moving the exponent: exact integer arithmetic on the digit tuple, no context rounding.
    coeff = int("".join(map(str, digits))) if digits else 0
    shift = exponent - exp
    scaled: int
    if shift >= 0:
        mul: int = 10**shift
        scaled = coeff * mul
    else:
        div: int = 10**-shift
        if coeff % div:
            raise UnitError(f"{what} {value} has more precision than 1e{exp}")
        scaled = coeff // div
    return -scaled if sign else scaled


def _from_int(value: int, exp: int) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnitError(f"expected int, got {type(value).__name__}")
    try:
        result: Decimal = Decimal(value).scaleb(exp)
        return result
    except InvalidOperation as exc:  # pragma: no cover - scaleb of an int cannot fail in default context
        raise UnitError(str(exc)) from exc


def price_to_e4(value: Decimal) -> int:
    """USD price -> int ticks of 1e-4. Raises ``UnitError`` on more than 4 decimal places."""
    return _to_int(value, PRICE_EXP, "price")


def e4_to_price(value: int) -> Decimal:
    """int ticks of 1e-4 USD -> Decimal USD (exact)."""
    return _from_int(value, PRICE_EXP)


def qty_to_e9(value: Decimal) -> int:
    """Shares -> int units of 1e-9 share. Raises ``UnitError`` on more than 9 decimal places."""
    return _to_int(value, QTY_EXP, "quantity")


def e9_to_qty(value: int) -> Decimal:
    """int units of 1e-9 share -> Decimal shares (exact)."""
    return _from_int(value, QTY_EXP)


def percent_to_bps(value: Decimal) -> int:
    """Percent (e.g. Decimal("0.5") for 0.5 %) -> int basis points. Raises on finer than 0.01 %."""
    return _to_int(value, BPS_EXP, "percent")


def bps_to_percent(value: int) -> Decimal:
    """int basis points -> Decimal percent (exact)."""
    return _from_int(value, BPS_EXP)


def notional_e13_to_e4_floor(value_e13: int) -> int:
    """price_e4 * qty_e9 products are in 1e-13 USD; floor to 1e-4 USD (used for reporting only)."""
    return value_e13 // QTY_SCALE
