"""Reconciliation jobs: each proves one property of the books and writes a ``ReconciliationReport``.

A break is classified (``kind``), logged as an alert, and halts trading on the affected customer account through
``apps.accounts.services.account_trading_halt`` (operations resume it by hand after resolving).

(a) ``cached_balances``: cached ledger balance == sum of postings, for every ledger account.
(b) ``positions_vs_lots``: per account and symbol, shares in the ledger == open tax-lot quantity.
(d) ``holds``: per account, held cash in the ledger == sum of open hold rows.
(e) ``cash_conservation``: the trial balance per asset is zero (customer + house cash == external transfers
    +/- fees), and every journal entry balances.
(f) ``unsettled``: per account and symbol, unsettled shares == sum of unsettled share obligations; unsettled
    cash never exceeds the pending sale proceeds.
(c) (our fills == the engine's fill events on Kafka) is not implemented yet.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Sum

from apps.accounts.models import BrokerageAccount
from apps.accounts.services import account_trading_halt
from apps.settlement.models import (
    CashHold,
    LedgerAccount,
    ReconciliationReport,
    SettlementObligation,
    TaxLot,
)
from apps.settlement.selectors import ledger_balance_breaks, trial_balance, unbalanced_entries

logger = logging.getLogger(__name__)
Kind = LedgerAccount.Kind
ZERO = Decimal(0)
Break = dict[str, Any]


def _cached_balances() -> list[Break]:
    return [
        {
            "kind": "cached_balance_mismatch",
            "account_id": str(b.account_id) if b.account_id else None,
            "ledger_account_id": b.ledger_account_id,
            "ledger_kind": b.kind,
            "asset": b.asset,
            "expected": str(b.derived),
            "actual": str(b.cached),
        }
        for b in ledger_balance_breaks()
    ]


def _positions_vs_lots() -> list[Break]:
    ledger: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for row in LedgerAccount.objects.filter(kind__in=[Kind.SEC_SETTLED, Kind.SEC_UNSETTLED]).values(
        "account_id", "asset", "balance"
    ):
        ledger[(str(row["account_id"]), row["asset"])] += row["balance"]
    lots: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for lot in TaxLot.objects.values("account_id", "symbol").annotate(q=Sum("remaining")):
        lots[(str(lot["account_id"]), lot["symbol"])] += lot["q"]
    out: list[Break] = []
    for key in sorted(set(ledger) | set(lots)):
        if ledger[key] != lots[key]:
            out.append(
                {
                    "kind": "position_lot_mismatch",
                    "account_id": key[0],
                    "asset": key[1],
                    "expected": str(ledger[key]),
                    "actual": str(lots[key]),
                }
            )
    return out


def _holds() -> list[Break]:
    ledger = {
        str(r["account_id"]): r["balance"]
        for r in LedgerAccount.objects.filter(kind=Kind.CASH_HELD).values("account_id", "balance")
    }
    rows = {
        str(r["account_id"]): r["s"]
        for r in CashHold.objects.values("account_id").annotate(s=Sum("remaining"))
    }
    out: list[Break] = []
    for acct in sorted(set(ledger) | set(rows)):
        if ledger.get(acct, ZERO) != rows.get(acct, ZERO):
            out.append(
                {
                    "kind": "hold_mismatch",
                    "account_id": acct,
                    "expected": str(rows.get(acct, ZERO)),
                    "actual": str(ledger.get(acct, ZERO)),
                }
            )
    return out


def _cash_conservation() -> list[Break]:
    out: list[Break] = [
        {"kind": "trial_balance_nonzero", "account_id": None, "asset": asset, "actual": str(total)}
        for asset, total in trial_balance().items()
    ]
    out += [{"kind": "unbalanced_entry", "account_id": None, "entry_id": e} for e in unbalanced_entries()]
    return out


def _unsettled() -> list[Break]:
    out: list[Break] = []
    pending: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for r in (
        SettlementObligation.objects.filter(settled_at__isnull=True)
        .values("account_id", "kind", "asset")
        .annotate(s=Sum("amount"))
    ):
        pending[(str(r["account_id"]), r["kind"], r["asset"])] += r["s"]
    for la in LedgerAccount.objects.filter(kind=Kind.SEC_UNSETTLED).values("account_id", "asset", "balance"):
        key = (str(la["account_id"]), "sec", la["asset"])
        if la["balance"] != pending.get(key, ZERO):
            out.append(
                {
                    "kind": "unsettled_shares_mismatch",
                    "account_id": key[0],
                    "asset": key[2],
                    "expected": str(pending.get(key, ZERO)),
                    "actual": str(la["balance"]),
                }
            )
    for cash in LedgerAccount.objects.filter(kind=Kind.CASH_UNSETTLED).values(
        "account_id", "asset", "balance"
    ):
        key = (str(cash["account_id"]), "cash", cash["asset"])
        receivable = max(pending.get(key, ZERO), ZERO)
        if cash["balance"] > receivable or cash["balance"] < 0:
            out.append(
                {
                    "kind": "unsettled_cash_out_of_range",
                    "account_id": key[0],
                    "asset": key[2],
                    "expected": f"0..{receivable}",
                    "actual": str(cash["balance"]),
                }
            )
    return out


JOBS: dict[str, Callable[[], list[Break]]] = {
    "cached_balances": _cached_balances,
    "positions_vs_lots": _positions_vs_lots,
    "holds": _holds,
    "cash_conservation": _cash_conservation,
    "unsettled": _unsettled,
}


def reconciliation_run(*, job: str, halt: bool = True) -> ReconciliationReport:
    """Run one job, store its report, and (``halt``) stop trading on every account with a break."""
    breaks = JOBS[job]()
    with transaction.atomic():
        halted: list[str] = []
        if halt:
            ids = sorted({b["account_id"] for b in breaks if b.get("account_id")})
            for account in BrokerageAccount.objects.filter(pk__in=ids).order_by("pk"):
                account_trading_halt(account=account, reason=f"reconciliation break: {job}")
                halted.append(str(account.pk))
        report = ReconciliationReport.objects.create(
            job=job,
            status=ReconciliationReport.Status.BREAKS if breaks else ReconciliationReport.Status.CLEAN,
            breaks=breaks,
            halted_accounts=halted,
        )
    if breaks:
        logger.error("reconciliation breaks", extra={"job": job, "count": len(breaks), "report": report.pk})
    return report


def reconciliation_run_all(*, halt: bool = True) -> list[ReconciliationReport]:
    return [reconciliation_run(job=job, halt=halt) for job in JOBS]
