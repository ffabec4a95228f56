"""The one place that defines the precision of money, prices and quantities.

- Cash amounts: 4 decimal places (sub-cent fees and fractional-share notional are exact), up to 10^14.
- Prices: 4 decimal places (sub-penny ticks below $1), instrument tick sizes restrict further.
- Quantities: 9 decimal places (fractional shares), up to 10^14 shares.
Ledger postings, balances, fills and orders all use these constants; nothing else sets max_digits.
"""

from __future__ import annotations

import decimal
from decimal import Decimal
from fractions import Fraction

MONEY_MAX_DIGITS = 20
MONEY_DECIMAL_PLACES = 4
PRICE_MAX_DIGITS = 16
PRICE_DECIMAL_PLACES = 4
QTY_MAX_DIGITS = 24
QTY_DECIMAL_PLACES = 9

# Arithmetic that must not round: price (16 digits) x qty (24 digits), cash per share x holdings, need more than
# the default context's 28 significant digits.
WIDE = decimal.Context(prec=80, rounding=decimal.ROUND_HALF_EVEN, traps=[decimal.InvalidOperation])

CENT = Decimal("0.01")
MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_DECIMAL_PLACES)


def allocate(total: Decimal, weights: list[Decimal], quantum: Decimal = CENT) -> list[Decimal]:
    """Split ``total`` by ``weights`` in units of ``quantum`` with the largest-remainder method.

    The parts always add up to ``total`` exactly (``total`` must be a multiple of ``quantum``).
    """
    if not weights:
        raise ValueError("weights must not be empty")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError("weights must be non-negative with a positive sum")
    units = total / quantum
    if units != units.to_integral_value():
        raise ValueError(f"{total} is not a multiple of {quantum}")
    total_units = int(units)
    # Exact rationals: at the ledger's sizes (1e17 cents, weights of 24 digits) the default decimal context (28
    # digits) rounds the shares, and a remainder rounded to a tie hands a cent to the wrong part.
    exact = [Fraction(w) for w in weights]
    weight_sum = sum(exact, Fraction(0))
    raw = [total_units * w / weight_sum for w in exact]
    floors = [r.numerator // r.denominator for r in raw]
    leftover = total_units - sum(floors)
    # Hand the leftover units to the largest remainders; ties go to the earlier index (deterministic).
    order = sorted(range(len(weights)), key=lambda i: (-(raw[i] - floors[i]), i))
    for i in order[:leftover]:
        floors[i] += 1
    return [quantum * f for f in floors]
