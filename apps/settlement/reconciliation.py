"""Reconciliation jobs: each proves one property of the books and writes a ``ReconciliationReport``.

A break is classified (``kind``), logged as an alert, and halts trading on the affected customer account through
``apps.accounts.services.account_trading_halt`` (operations resume it by hand after resolving).

(a) ``cached_balances``: cached ledger balance == sum of postings, for every ledger account.
(b) ``positions_vs_lots``: per account and symbol, shares in the ledger == open tax-lot quantity.
(c) ``fills_vs_engine``: our fills (ledger FILL entries) == the engine's ``engine.OrderFilled`` events on
    ``orders.events``, one for one, read from the beginning with a throwaway consumer group (``read_committed``,
    partitions assigned, nothing committed). Our fill ids are read FIRST, so every one of them must already be
    on Kafka; an engine fill younger than ``grace_seconds`` may still be in flight to us and is not a break.
    Kinds: ``fill_missing_in_ledger`` (a dropped event), ``fill_duplicated`` (a second ledger fill with the same
    order, qty, price and time as one the engine knows), ``fill_not_on_engine``, ``fill_mismatch``.
(d) ``holds``: per account, held cash in the ledger == sum of open hold rows; and hold rows == open orders'
    reserved amounts (``apps.orders.selectors.order_reservations``): ``hold_missing``, ``hold_amount_mismatch``,
    ``hold_not_released`` (order terminal, cash still held), ``hold_orphaned`` (no such order), and the same
    for sell orders' share reservations (``reservation_*``).
(e) ``cash_conservation``: the trial balance per asset is zero (customer + house cash == external transfers
    +/- fees), and every journal entry balances.
(f) ``unsettled``: per account and symbol, unsettled shares == sum of unsettled share obligations; unsettled
    cash never exceeds the pending sale proceeds.
Every break also becomes a ``ReconciliationAlert`` row and an ERROR log line; each run emits its break count as
the EMF metric ``Brokerage/ReconciliationBreaks`` (``apps.core.emf``).
"""

from __future__ import annotations

import importlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from confluent_kafka import KafkaException
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from apps.accounts.models import BrokerageAccount
from apps.accounts.services import account_trading_halt
from apps.core import events, kafka
from apps.core.emf import emf_emit
from apps.settlement.consumers import FILL_EVENT_TYPE
from apps.settlement.models import (
    CashHold,
    JournalEntry,
    LedgerAccount,
    ReconciliationAlert,
    ReconciliationReport,
    SettlementObligation,
    ShareReservation,
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


def _holds_vs_orders() -> list[Break]:
    orders_selectors = importlib.import_module("apps.orders.selectors")
    holds = {h.order_id: h for h in CashHold.objects.all()}
    reservations = {r.order_id: r for r in ShareReservation.objects.all()}
    live = sorted(
        [oid for oid, h in holds.items() if h.remaining > 0]
        + [oid for oid, r in reservations.items() if r.remaining > 0]
    )
    orders = {o["id"]: o for o in orders_selectors.order_reservations(order_ids=live)}
    out: list[Break] = []

    def brk(kind: str, account_id: str, order_id: str, expected: object, actual: object) -> None:
        out.append(
            {
                "kind": kind,
                "account_id": account_id,
                "order_id": order_id,
                "expected": str(expected),
                "actual": str(actual),
            }
        )

    for oid, o in sorted(orders.items()):
        if not o["is_open"]:
            continue
        if o["side"] == "buy" and o["reserved_amount"] > 0:
            hold = holds.get(oid)
            if hold is None:
                brk("hold_missing", o["account_id"], oid, o["reserved_amount"], ZERO)
            elif hold.amount != o["reserved_amount"]:
                brk("hold_amount_mismatch", o["account_id"], oid, o["reserved_amount"], hold.amount)
        if o["side"] == "sell" and o["reserved_qty"] > 0:
            res = reservations.get(oid)
            if res is None:
                brk("reservation_missing", o["account_id"], oid, o["reserved_qty"], ZERO)
            elif res.qty != o["reserved_qty"]:
                brk("reservation_qty_mismatch", o["account_id"], oid, o["reserved_qty"], res.qty)
    remaining: list[tuple[str, str, str, Decimal]] = [
        ("hold", oid, str(h.account_id), h.remaining) for oid, h in holds.items()
    ] + [("reservation", oid, str(r.account_id), r.remaining) for oid, r in reservations.items()]
    for prefix, oid, account_id, left in sorted(remaining):
        if left <= 0:
            continue
        order = orders.get(oid)
        if order is None:
            brk(f"{prefix}_orphaned", account_id, oid, ZERO, left)
        elif not order["is_open"]:
            brk(f"{prefix}_not_released", account_id, oid, ZERO, left)
    return out


def _holds_all() -> list[Break]:
    return _holds() + _holds_vs_orders()


# Kafka read bounds for (c): the whole topic is read to its end; a stalled read is an error, not a clean report.
ENGINE_READ_TIMEOUT_S = 60.0


def engine_fills(
    topic: str = "orders.events", timeout: float = ENGINE_READ_TIMEOUT_S
) -> dict[str, dict[str, Any]]:
    """Every ``engine.OrderFilled`` payload on ``topic`` by fill id (a redelivered duplicate counts once)."""
    physical = kafka.topic_name(topic)
    fills: dict[str, dict[str, Any]] = {}
    try:
        for record in kafka.topic_read_to_end(topic, timeout=timeout, group_prefix="reconciliation"):
            try:
                envelope = events.decode(record.value or b"")
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
                continue  # undecodable records are the DLQ's business, not fills
            if envelope.event_type == FILL_EVENT_TYPE and "fill_id" in envelope.payload:
                fills.setdefault(str(envelope.payload["fill_id"]), envelope.payload)
    except kafka.TopicNotReadable as exc:
        raise RuntimeError(f"engine topic {physical} is not readable") from exc
    except kafka.TopicReadTimeout as exc:
        raise RuntimeError(f"engine topic {physical} not read to its end in {timeout}s") from exc
    except KafkaException as exc:
        raise RuntimeError(f"engine topic read failed: {exc}") from exc
    return fills


def _fill_key(d: dict[str, Any]) -> tuple[str, str, str, Decimal, Decimal]:
    return (
        str(d["account_id"]),
        str(d["order_id"]),
        str(d["side"]).lower(),
        Decimal(d["qty"]),
        Decimal(d["price"]),
    )


def fills_vs_engine(*, topic: str = "orders.events", grace_seconds: int = 300) -> list[Break]:
    ours = {
        e.source_id: {**e.details, "account_id": str(e.account_id), "filled_at": e.occurred_at}
        for e in JournalEntry.objects.filter(source_type="fill", entry_type=JournalEntry.EntryType.FILL)
    }
    engine = engine_fills(topic)
    cutoff = timezone.now() - timedelta(seconds=grace_seconds)
    out: list[Break] = []
    known = {(_fill_key(d), d["filled_at"]) for fid, d in ours.items() if fid in engine}
    for fid in sorted(set(ours) - set(engine)):
        d = ours[fid]
        kind = "fill_duplicated" if (_fill_key(d), d["filled_at"]) in known else "fill_not_on_engine"
        out.append({"kind": kind, "account_id": d["account_id"], "fill_id": fid, "order_id": d["order_id"]})
    for fid in sorted(set(engine) - set(ours)):
        p = engine[fid]
        at = datetime.fromisoformat(
            str(p.get("filled_at", "")).replace("Z", "+00:00") or "1970-01-01T00:00:00+00:00"
        )
        if at > cutoff:
            continue  # still in flight to the ledger
        out.append(
            {
                "kind": "fill_missing_in_ledger",
                "account_id": str(p.get("account_id", "")),
                "fill_id": fid,
                "order_id": str(p.get("order_id", "")),
            }
        )
    for fid in sorted(set(engine) & set(ours)):
        if _fill_key(engine[fid]) != _fill_key(ours[fid]):
            out.append(
                {
                    "kind": "fill_mismatch",
                    "account_id": ours[fid]["account_id"],
                    "fill_id": fid,
                    "expected": str(_fill_key(engine[fid])),
                    "actual": str(_fill_key(ours[fid])),
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


# Jobs that read only PostgreSQL, and every job ((c) reads Kafka too).
DB_JOBS: dict[str, Callable[..., list[Break]]] = {
    "cached_balances": _cached_balances,
    "positions_vs_lots": _positions_vs_lots,
    "holds": _holds_all,
    "cash_conservation": _cash_conservation,
    "unsettled": _unsettled,
}
JOBS: dict[str, Callable[..., list[Break]]] = {**DB_JOBS, "fills_vs_engine": fills_vs_engine}


def _account_ids(breaks: list[Break]) -> list[uuid.UUID]:
    ids: set[uuid.UUID] = set()
    for b in breaks:
        try:
            ids.add(uuid.UUID(str(b.get("account_id"))))
        except ValueError:
            continue  # house-side break (or an engine fill naming no account of ours)
    return sorted(ids)


def reconciliation_run(*, job: str, halt: bool = True, **options: Any) -> ReconciliationReport:
    """Run one job, store its report and one alert per break, and (``halt``) stop trading on every account
    with a break. ``options`` go to the job (e.g. ``topic``, ``grace_seconds`` for ``fills_vs_engine``)."""
    breaks = JOBS[job](**options)
    with transaction.atomic():
        halted: list[str] = []
        accounts = {
            a.pk: a for a in BrokerageAccount.objects.filter(pk__in=_account_ids(breaks)).order_by("pk")
        }
        if halt:
            for halted_account in accounts.values():
                account_trading_halt(account=halted_account, reason=f"reconciliation break: {job}")
                halted.append(str(halted_account.pk))
        report = ReconciliationReport.objects.create(
            job=job,
            status=ReconciliationReport.Status.BREAKS if breaks else ReconciliationReport.Status.CLEAN,
            breaks=breaks,
            halted_accounts=halted,
        )
        alerts = []
        for b in breaks:
            account: BrokerageAccount | None
            try:
                account = accounts.get(uuid.UUID(str(b.get("account_id"))))
            except ValueError:
                account = None
            alerts.append(
                ReconciliationAlert(report=report, job=job, kind=b["kind"], account=account, details=b)
            )
        ReconciliationAlert.objects.bulk_create(alerts)
    for b in breaks:
        logger.error("reconciliation break", extra={"job": job, "report": report.pk, "break": b})
    # Brokerage/ReconciliationBreaks, no dimensions: the alarm in deploy/ecs/stacks/platform.py pages on > 0.
    emf_emit(metrics={"ReconciliationBreaks": len(breaks)}, dimensions={})
    return report


def reconciliation_run_all(
    *, halt: bool = True, jobs: Iterable[str] | None = None
) -> list[ReconciliationReport]:
    return [reconciliation_run(job=job, halt=halt) for job in (jobs if jobs is not None else JOBS)]
