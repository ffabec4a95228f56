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
from apps.settlement.models import CashHold, LedgerAccount, ReconciliationReport, TaxLot
from apps.settlement.reconciliation import JOBS, reconciliation_run, reconciliation_run_all
from tests.settlement.factories import account_create
from tests.settlement.helpers import fill

pytestmark = pytest.mark.django_db

WED = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def _books() -> BrokerageAccount:
    account = account_create()
    services.cash_deposit_post(account=account, amount=Decimal("1000"), transfer_id="dep")
    services.hold_place(account=account, order_id="B1", amount=Decimal("500"))
    services.fill_settle_trade_date(
        fill=fill(account.pk, order_id="B1", side="buy", qty="3", price="10", at=WED, fill_id="f1")
    )
    return account


def test_clean_books_report_nothing_and_halt_nobody() -> None:
    account = _books()
    reports = reconciliation_run_all()
    assert [(r.job, r.status, r.breaks) for r in reports] == [(job, "clean", []) for job in JOBS]
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
