"""The firm's ledger rows (clearing, fees) are locked after the customers' rows, and a fill booker that defers
them (``trade_date_book(..., house=...)``, the projection's chunks) takes them only at ``HouseMoves.apply``.

Every fill moves the same firm rows, so a booker that locked them for its whole transaction serialized every other
booker (measured with two projection processes: docs/PERFORMANCE.md). The tests hold a row from a second
connection and show which statement waits for it (``lock_timeout``: a wait fails instead of hanging).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest
from django.db import OperationalError, connection, transaction

from apps.accounts.models import BrokerageAccount
from apps.settlement import bulk, services
from apps.settlement.models import JournalEntry, LedgerAccount
from apps.settlement.services import Kind, _cust, _house
from apps.settlement.types import FillData
from tests.settlement.conftest import books_assert_sound
from tests.settlement.factories import account_create

pytestmark = pytest.mark.django_db(transaction=True)

AT = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def _fill(n: int, account: BrokerageAccount, order_id: str) -> FillData:
    return FillData(
        fill_id=f"hf-{n}",
        order_id=order_id,
        account_id=str(account.pk),
        symbol="AAPL",
        side="buy",
        qty=Decimal("2"),
        price=Decimal("100"),
        filled_at=AT.replace(minute=n),
        liquidity="taker",
    )


def _buyer(order_id: str) -> BrokerageAccount:
    account = account_create()
    with transaction.atomic():
        services.cash_deposit_post(account=account, amount=Decimal("1000"), transfer_id=f"d-{account.pk}")
        services.hold_place(account=account, order_id=order_id, amount=Decimal("500"))
    return account


def _other() -> psycopg.Connection[tuple[object, ...]]:
    params = connection.get_connection_params()
    return psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"})


@contextmanager
def _held(where: str, params: list[object]) -> Iterator[None]:
    """Ledger rows ``where`` locked FOR UPDATE by another connection until the block ends."""
    with _other() as other:
        sql = f"SELECT id FROM settlement_ledgeraccount WHERE {where} FOR UPDATE"  # noqa: S608 (the tests' own)
        rows = other.execute(sql, params).fetchall()
        assert rows, f"no ledger row where {where}"
        try:
            yield
        finally:
            other.rollback()


def _lock_timeout() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL lock_timeout = '1s'")


def _firm_rows() -> None:
    """The firm rows of an AAPL buy exist (a first fill creates them), so the holds below have rows to hold."""
    first = _buyer("warm")
    with transaction.atomic():
        bulk.trade_date_book(ops=[_fill(0, first, "warm")])


def test_a_deferring_booker_books_while_another_transaction_holds_the_firm_clearing_row() -> None:
    _firm_rows()
    account = _buyer("o1")
    fill = _fill(1, account, "o1")
    with _held("account_id IS NULL AND kind = %s AND asset = %s", [Kind.CLEARING, "USD"]):
        # Locked up front (every path but the projection's): the booking waits for the held row.
        with transaction.atomic():
            _lock_timeout()
            with pytest.raises(OperationalError, match="lock timeout"):
                bulk.trade_date_book(ops=[fill])
            transaction.set_rollback(True)
        # Deferred: the whole booking runs; only the firm rows' move, the last write, waits.
        with transaction.atomic():
            _lock_timeout()
            house = bulk.HouseMoves()
            booked = bulk.trade_date_book(ops=[fill], house=house)
            assert booked[fill.fill_id].pk is not None
            assert house.totals, "the fill's firm legs were deferred"
            with pytest.raises(OperationalError, match="lock timeout"):
                house.apply()
            transaction.set_rollback(True)
    assert not JournalEntry.objects.filter(source_id=fill.fill_id).exists()  # both attempts rolled back
    with transaction.atomic():
        house = bulk.HouseMoves()
        bulk.trade_date_book(ops=[fill], house=house)
        house.apply()
    assert JournalEntry.objects.filter(source_type="fill", source_id=fill.fill_id).count() == 1
    books_assert_sound()


def test_deferred_and_locked_bookings_leave_the_same_balances() -> None:
    _firm_rows()
    a, b = _buyer("oa"), _buyer("ob")
    with transaction.atomic():
        bulk.trade_date_book(ops=[_fill(1, a, "oa")])
        locked = {(r.account_id, r.kind, r.asset): r.balance for r in LedgerAccount.objects.all()}
        transaction.set_rollback(True)
    with transaction.atomic():
        house = bulk.HouseMoves()
        bulk.trade_date_book(ops=[_fill(1, a, "oa")], house=house)
        house.apply()
    deferred = {(r.account_id, r.kind, r.asset): r.balance for r in LedgerAccount.objects.all()}
    assert deferred == locked
    assert deferred[(None, Kind.CLEARING, "USD")] != 0  # the firm rows did move
    books_assert_sound()
    assert b.pk  # a second buyer's rows exist but were not touched
    assert deferred[(b.pk, Kind.CASH_SETTLED, "USD")] == Decimal("500")


def test_house_moves_apply_refuses_a_customer_row() -> None:
    account = _buyer("oc")
    row = services.ledger_rows_lock([_cust(account.pk, Kind.CASH_SETTLED)])[
        _cust(account.pk, Kind.CASH_SETTLED)
    ]
    house = bulk.HouseMoves()
    house.add(row, Decimal("1"))
    with pytest.raises(ValueError, match="firm's rows only"), transaction.atomic():
        house.apply()


def test_the_customers_rows_are_locked_before_the_firms() -> None:
    """A locker waiting for a customer's row holds no firm row yet: the global order that keeps a deferring booker
    (customer rows first, firm rows at its end) deadlock-free against every other locker."""
    _firm_rows()
    account = _buyer("od")
    clearing, cash = _house(Kind.CLEARING), _cust(account.pk, Kind.CASH_SETTLED)
    outcome: list[object] = []

    def locker() -> None:
        try:
            with transaction.atomic():
                services.ledger_rows_lock([clearing, cash])
                outcome.append("locked")
        except BaseException as exc:  # surfaced below: a thread must not fail silently
            outcome.append(exc)
        finally:
            connection.close()

    with _held("account_id = %s AND kind = %s AND asset = %s", [account.pk, Kind.CASH_SETTLED, "USD"]):
        thread = threading.Thread(target=locker)
        thread.start()
        with _other() as probe:
            # Wait until the locker is blocked on the customer's row, then try the firm row without waiting.
            for _ in range(200):
                waiting = probe.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = "
                    "current_database()"
                ).fetchone()
                probe.rollback()
                if waiting and waiting[0]:
                    break
                threading.Event().wait(0.05)
            else:
                pytest.fail("the locker never waited for the held customer row")
            firm = probe.execute(
                "SELECT id FROM settlement_ledgeraccount WHERE account_id IS NULL AND kind = %s AND asset = %s "
                "FOR UPDATE NOWAIT",
                [Kind.CLEARING, "USD"],
            ).fetchall()
            assert len(firm) == 1  # not held by the waiting locker
            probe.rollback()
    thread.join(30)
    assert outcome == ["locked"]
