"""Reconciliation finds injected breaks, reports nothing on clean books, and halts trading where it breaks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import pytest
from django.db import connection

from apps.accounts.models import BrokerageAccount
from apps.settlement import services
from apps.settlement.models import CashHold, LedgerAccount, ReconciliationAlert, ReconciliationReport, TaxLot
from apps.settlement.reconciliation import DB_JOBS, reconciliation_run, reconciliation_run_all
from tests.settlement.factories import account_create, order_create
from tests.settlement.helpers import fill

pytestmark = pytest.mark.django_db

WED = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def _books() -> BrokerageAccount:
    account = account_create()
    services.cash_deposit_post(account=account, amount=Decimal("1000"), transfer_id="dep")
    order = order_create(account, side="buy", qty="10", limit_price="50", reserved_amount=Decimal("500"))
    services.hold_place(account=account, order_id=str(order.id), amount=Decimal("500"))
    services.fill_settle_trade_date(
        fill=fill(account.pk, order_id=str(order.id), side="buy", qty="3", price="10", at=WED, fill_id="f1")
    )
    return account


def test_clean_books_report_nothing_and_halt_nobody() -> None:
    account = _books()
    reports = reconciliation_run_all(
        jobs=DB_JOBS
    )  # (c) reads Kafka: tests/settlement/test_reconciliation_engine.py
    assert [(r.job, r.status, r.breaks) for r in reports] == [(job, "clean", []) for job in DB_JOBS]
    assert ReconciliationAlert.objects.count() == 0
    account.refresh_from_db()
    assert account.trading_halted_reason == ""


def _edit_cached_balance(account_id: UUID) -> None:
    LedgerAccount.objects.filter(account_id=account_id, kind="cash_settled").update(balance=Decimal("999"))


def _edit_lot(account_id: UUID) -> None:
    TaxLot.objects.filter(account_id=account_id).update(remaining=Decimal("2"))


def _edit_hold(account_id: UUID) -> None:
    CashHold.objects.filter(account_id=account_id).update(remaining=Decimal("1"))


def _drop_posting(account_id: UUID) -> None:
    # The immutability trigger stops the application; an intruder with DDL rights disables it first.
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # flush pending deferred checks before ALTER
        cursor.execute("ALTER TABLE settlement_posting DISABLE TRIGGER settlement_posting_immutable")
        cursor.execute(
            "DELETE FROM settlement_posting WHERE id = (SELECT max(p.id) FROM settlement_posting p "
            "JOIN settlement_ledgeraccount la ON la.id = p.ledger_account_id WHERE la.kind = 'clearing')"
        )
        cursor.execute("ALTER TABLE settlement_posting ENABLE TRIGGER settlement_posting_immutable")


@pytest.mark.parametrize(
    ("inject", "job", "kinds"),
    [
        pytest.param(
            _edit_cached_balance, "cached_balances", {"cached_balance_mismatch"}, id="edited-cached-balance"
        ),
        pytest.param(_edit_lot, "positions_vs_lots", {"position_lot_mismatch"}, id="edited-lot"),
        pytest.param(_edit_hold, "holds", {"hold_mismatch"}, id="edited-hold"),
        pytest.param(
            _drop_posting,
            "cash_conservation",
            {"trial_balance_nonzero", "unbalanced_entry"},
            id="deleted-posting",
        ),
    ],
)
def test_each_injected_break_is_found_and_halts(
    inject: Callable[[UUID], None], job: str, kinds: set[str], books_broken: None
) -> None:
    account = _books()
    inject(account.pk)
    report = reconciliation_run(job=job)
    assert report.status == "breaks"
    assert {b["kind"] for b in report.breaks} == kinds
    if job != "cash_conservation":  # house-side breaks have no customer account to halt
        assert report.halted_accounts == [str(account.pk)]
        account.refresh_from_db()
        assert account.trading_halted_reason == f"reconciliation break: {job}"
    assert ReconciliationReport.objects.filter(status="breaks").count() == 1
    assert sorted(a.kind for a in ReconciliationAlert.objects.all()) == sorted(
        b["kind"] for b in report.breaks
    )


def test_holds_against_open_orders_find_every_injected_break() -> None:
    account = _books()  # one open buy order whose 500 hold matches: clean
    missing = order_create(account, side="buy", qty="2", limit_price="50", reserved_amount=Decimal("100"))
    canceled = order_create(account, side="buy", qty="1", limit_price="50", reserved_amount=Decimal("50"))
    services.hold_place(account=account, order_id=str(canceled.id), amount=Decimal("50"))
    canceled.status = "canceled"  # the projection canceled it but never released the hold
    canceled.save(update_fields=["status"])
    services.hold_place(account=account, order_id="no-such-order", amount=Decimal("20"))
    services.fill_settle_trade_date(
        fill=fill(account.pk, order_id="seed", side="buy", qty="5", price="1", at=WED, fill_id="seed")
    )
    sell = order_create(account, side="sell", qty="5", limit_price="60", reserved_qty=Decimal("5"))
    services.shares_reserve(account=account, order_id=str(sell.id), symbol="AAPL", qty=Decimal("4"))

    report = reconciliation_run(job="holds")

    assert sorted((b["kind"], b["order_id"], b["expected"], b["actual"]) for b in report.breaks) == sorted(
        [
            ("hold_missing", str(missing.id), "100.0000", "0"),
            ("hold_not_released", str(canceled.id), "0", "50.0000"),
            ("hold_orphaned", "no-such-order", "0", "20.0000"),
            ("reservation_qty_mismatch", str(sell.id), "5.000000000", "4.000000000"),
        ]
    )
    assert report.halted_accounts == [str(account.pk)]
    assert ReconciliationAlert.objects.filter(account=account, job="holds").count() == 4
