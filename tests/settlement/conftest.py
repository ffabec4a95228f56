"""Every settlement test ends with sound books: balanced entries, zero trial balance, cached == derived."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from apps.settlement.selectors import ledger_balance_breaks, trial_balance, unbalanced_entries


def books_assert_sound() -> None:
    assert unbalanced_entries() == []
    assert trial_balance() == {}
    assert ledger_balance_breaks() == []


@pytest.fixture(autouse=True)
def _books_sound_after(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if (
        request.node.get_closest_marker("django_db") is not None
        and "books_broken" not in request.fixturenames
    ):
        books_assert_sound()


@pytest.fixture
def books_broken() -> None:
    """Request this in a test that deliberately corrupts the books (skips the soundness check after it)."""
