"""Concurrent spends against one balance: exactly the affordable set succeeds; cash never goes negative."""

from __future__ import annotations

import threading
from decimal import Decimal
from uuid import UUID

import pytest
from django.db import connection

from apps.core.errors import InsufficientFunds
from apps.settlement import selectors, services
from apps.settlement.models import CashHold, JournalEntry
from tests.settlement.factories import account_create

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 20


def _race(work: list[tuple[str, Decimal]], account_pk: UUID) -> tuple[list[str], list[str]]:
    """Run each (kind, amount) in its own thread and connection, all released at once by a barrier."""
    from apps.accounts.models import BrokerageAccount

    barrier = threading.Barrier(len(work))
    ok: list[str] = []
    refused: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int, kind: str, amount: Decimal) -> None:
        try:
            account = BrokerageAccount.objects.get(pk=account_pk)
            barrier.wait()
            try:
                if kind == "hold":
                    services.hold_place(account=account, order_id=f"O{i}", amount=amount)
                else:
                    services.cash_withdrawal_post(account=account, amount=amount, transfer_id=f"W{i}")
                with lock:
                    ok.append(f"{kind}{i}")
            except InsufficientFunds:
                with lock:
                    refused.append(f"{kind}{i}")
        except BaseException as exc:  # surfaced below: a thread must not fail silently
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, kind, amount)) for i, (kind, amount) in enumerate(work)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return ok, refused


@pytest.mark.parametrize(
    ("amount", "affordable"),
    [
        pytest.param(Decimal("1000"), 1, id="each-wants-everything"),
        pytest.param(Decimal("100"), 10, id="ten-of-twenty-fit"),
        pytest.param(Decimal("333.33"), 3, id="three-fit-with-remainder"),
    ],
)
def test_concurrent_holds_and_withdrawals_of_the_whole_balance(amount: Decimal, affordable: int) -> None:
    account = account_create()
    services.cash_deposit_post(account=account, amount=Decimal("1000"), transfer_id="seed")
    # Pre-create the hold-side rows so every thread locks existing rows.
    services.hold_place(account=account, order_id="warm", amount=Decimal("1"))
    services.hold_release(order_id="warm")
    work = [("hold" if i % 2 == 0 else "withdraw", amount) for i in range(THREADS)]
    ok, refused = _race(work, account.pk)
    assert len(ok) == affordable
    assert len(refused) == THREADS - affordable
    bal = selectors.cash_balances(account)
    assert bal.settled == Decimal("1000") - affordable * amount
    assert bal.settled >= 0
    holds = CashHold.objects.exclude(order_id="warm").count()
    withdrawals = JournalEntry.objects.filter(entry_type="CSW").count()
    assert holds + withdrawals == affordable
    assert bal.held == holds * amount
    assert bal.total == Decimal("1000") - withdrawals * amount
