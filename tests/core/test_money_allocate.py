"""Money arithmetic that must not round early: ``apps.core.money.allocate`` (the largest-remainder split of a cash
total by weights, exact at any size the ledger holds: weights up to 1e15 shares with 9 places, totals up to 1e15
dollars) and a fill's notional."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.core.money import CENT, allocate

_weights = st.lists(
    st.integers(min_value=0, max_value=10**24 - 1).map(lambda n: Decimal(n).scaleb(-9)),
    min_size=1,
    max_size=12,
).filter(lambda ws: sum(ws) > 0)
_totals = st.integers(min_value=0, max_value=10**17 - 1).map(lambda n: Decimal(n).scaleb(-2))


def _reference(total: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """The same rule in exact rationals: floors, then the leftover cents to the largest remainders (earlier first)."""
    units = int(total / CENT)
    weight_sum = sum(Fraction(w) for w in weights)
    raw = [units * Fraction(w) / weight_sum for w in weights]
    floors = [r.numerator // r.denominator for r in raw]
    order = sorted(range(len(weights)), key=lambda i: (-(raw[i] - floors[i]), i))
    for i in order[: units - sum(floors)]:
        floors[i] += 1
    return [CENT * f for f in floors]


@settings(max_examples=400, deadline=None)
@given(total=_totals, weights=_weights)
def test_the_parts_add_up_and_follow_the_largest_remainder_rule_exactly(
    total: Decimal, weights: list[Decimal]
) -> None:
    parts = allocate(total, weights)
    assert sum(parts, Decimal(0)) == total
    assert parts == _reference(total, weights)


def test_large_weights_and_totals_are_not_rounded_before_the_remainders_are_compared() -> None:
    # 1e17 cents over 1e24 weight units: the default decimal context (28 digits) rounds the second share's remainder
    # (one half plus 1/S) to one half, a tie the first wins; exactly, the last cent left goes to the second.
    weights = [
        Decimal("499999999999999.999999999"),
        Decimal("45636409127281.825456364"),
        Decimal("454363590872718.174543635"),
    ]
    total = Decimal("999999999999999.99")
    assert allocate(total, weights) == [
        Decimal("499999999999999.99"),
        Decimal("45636409127281.83"),
        Decimal("454363590872718.17"),
    ]


@pytest.mark.parametrize(
    ("total", "weights"),
    [(Decimal("1.00"), []), (Decimal("1.00"), [Decimal(0)]), (Decimal("1.00"), [Decimal(-1), Decimal(2)])],
)
def test_weights_without_a_positive_sum_are_refused(total: Decimal, weights: list[Decimal]) -> None:
    with pytest.raises(ValueError, match="weights"):
        allocate(total, weights)


def test_a_fills_notional_is_rounded_once() -> None:
    from apps.settlement.services import fill_notional

    # qty x price = 9000000183306333.29945000000001 (a notional the money columns hold): rounded at the default
    # context's 28 digits first it reads as the tie ...2994|5 and half-even would give ...2994.
    assert fill_notional(Decimal("90000001.833333333"), Decimal("99999999.9997")) == Decimal(
        "9000000183306333.2995"
    )
