"""The auditor: after the drain, every invariant the platform promises, each as one named check.

Reads the database (the book of record), Redis (the market-data book), the run's JSONL history and, for the
engine, the run's Kafka topics (``orders.commands``/``orders.events``/``engine.snapshots``, read_committed).
Every check returns ``Check(name, ok, detail)``; the run fails if any fails. ``audit`` runs after the
supervisor stopped the platform, so the engine has written its exit snapshot and nothing appends any more.
"""

from __future__ import annotations

import io
import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

ZERO = Decimal(0)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


def history_load(path: Path) -> list[dict[str, Any]]:
    with path.open() as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _first(items: Iterable[Any], n: int = 5) -> str:
    out = list(items)
    return f"{len(out)}: {out[:n]}" if out else ""


# ----------------------------------------------------------------------------------------------- the books


def check_ledger() -> list[Check]:
    from django.core.management import call_command

    from apps.settlement.selectors import ledger_balance_breaks, trial_balance, unbalanced_entries

    checks = [
        Check("ledger trial balance is zero per asset", not (tb := trial_balance()), str(tb) if tb else ""),
        Check("ledger cached balances = sum of postings", not (br := ledger_balance_breaks()), _first(br)),
        Check("every journal entry sums to zero", not (ue := unbalanced_entries()), _first(ue)),
    ]
    try:
        call_command("ledger_verify", stdout=io.StringIO(), stderr=io.StringIO())
        checks.append(Check("manage.py ledger_verify", True))
    except (SystemExit, Exception) as exc:
        checks.append(Check("manage.py ledger_verify", False, repr(exc)))
    return checks


def _customer_balances() -> dict[tuple[str, str, str], Decimal]:
    from apps.settlement.models import LedgerAccount

    return {
        (str(a), k, asset): bal
        for a, k, asset, bal in LedgerAccount.objects.filter(account__isnull=False).values_list(
            "account_id", "kind", "asset", "balance"
        )
    }


def check_conservation(seed_shares: Decimal) -> list[Check]:
    """Cash = deposits − withdrawals − buys + sells − fees, and shares = seeded + bought − sold, per account."""
    from apps.orders.models import Fill
    from apps.settlement.models import JournalEntry, LedgerAccount, Posting
    from apps.settlement.services import fill_notional

    kind = LedgerAccount.Kind
    bal = _customer_balances()
    cash_have: dict[str, Decimal] = defaultdict(Decimal)
    sec_have: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for (acct, k, asset), b in bal.items():
        if k in LedgerAccount.CASH_KINDS:
            cash_have[acct] += b
        elif k in (kind.SEC_SETTLED, kind.SEC_UNSETTLED):
            sec_have[(acct, asset)] += b

    cash_want: dict[str, Decimal] = defaultdict(Decimal)
    transfers = Posting.objects.filter(
        entry__entry_type__in=[JournalEntry.EntryType.CSD, JournalEntry.EntryType.CSW],
        ledger_account__account__isnull=False,
    ).values_list("ledger_account__account_id", "amount")
    for owner, amount in transfers:
        cash_want[str(owner)] += amount
    fees = {
        source_id: sum((Decimal(v) for v in (details or {}).get("fees", {}).values()), ZERO)
        for source_id, details in JournalEntry.objects.filter(source_type="fill").values_list(
            "source_id", "details"
        )
    }
    sec_want: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for acct in cash_have:
        for sym in {a for (x, a) in sec_have if x == acct}:
            sec_want[(acct, sym)] = seed_shares
    for fill in Fill.objects.all().iterator():
        acct = str(fill.account_id)
        notional = fill_notional(fill.qty, fill.price)
        sign = -1 if fill.side == "buy" else 1
        cash_want[acct] += sign * notional - fees.get(fill.fill_id, ZERO)
        sec_want[(acct, fill.symbol)] -= sign * fill.qty
    cash_bad = [(a, str(cash_have[a]), str(cash_want[a])) for a in set(cash_have) | set(cash_want)
                if cash_have[a] != cash_want[a]]  # fmt: skip
    sec_bad = [(k, str(sec_have[k]), str(sec_want[k])) for k in set(sec_have) | set(sec_want)
               if sec_have[k] != sec_want[k]]  # fmt: skip
    negative = [(k, str(b)) for k, b in bal.items() if k[1] in LedgerAccount.CASH_KINDS and b < 0]
    negative_total = [(a, str(c)) for a, c in cash_have.items() if c < 0]
    return [
        Check(
            "cash conserved per account (deposits − withdrawals − buys + sells − fees)",
            not cash_bad,
            _first(cash_bad),
        ),
        Check("positions = seeded shares + sum of fills", not sec_bad, _first(sec_bad)),
        Check("no negative cash balance (settled, unsettled, held)", not negative, _first(negative)),
        Check("no negative total cash per account", not negative_total, _first(negative_total)),
    ]


def check_fills() -> list[Check]:
    from django.db.models import Count, Sum

    from apps.orders.models import Fill, Order
    from apps.settlement.models import JournalEntry

    dup = list(
        Fill.objects.values("fill_id").annotate(n=Count("id")).filter(n__gt=1).values_list("fill_id", "n")
    )
    fill_ids = set(Fill.objects.values_list("fill_id", flat=True))
    entries = list(JournalEntry.objects.filter(source_type="fill").values_list("source_id", flat=True))
    entry_dup = [s for s in set(entries) if entries.count(s) > 1] if len(entries) != len(set(entries)) else []
    unposted = fill_ids - set(entries)
    orphan = set(entries) - fill_ids
    sums = dict(Fill.objects.values("order_id").annotate(q=Sum("qty")).values_list("order_id", "q"))
    bad_qty = [
        (str(o), str(f), str(sums.get(o, ZERO)))
        for o, f in Order.objects.values_list("id", "filled_qty")
        if (f or ZERO) != sums.get(o, ZERO)
    ]
    return [
        Check("no fill applied twice (fill_id unique)", not dup, _first(dup)),
        Check("one ledger entry per fill (none twice)", not entry_dup, _first(entry_dup)),
        Check("every fill posted to the ledger", not unposted, _first(unposted)),
        Check("every fill entry has its fill", not orphan, _first(orphan)),
        Check("order.filled_qty = sum of its fills", not bad_qty, _first(bad_qty)),
    ]


def check_holds() -> list[Check]:
    from django.db.models import Sum

    from apps.orders.models import Order
    from apps.settlement.models import CashHold, LedgerAccount, ShareReservation

    status = {str(i): s for i, s in Order.objects.values_list("id", "status")}
    stale_holds = [
        (h.order_id, status.get(h.order_id.split(":")[0]), str(h.remaining))
        for h in CashHold.objects.filter(remaining__gt=0)
        if status.get(h.order_id.split(":")[0]) not in Order.OPEN
    ]
    stale_res = [
        (r.order_id, status.get(r.order_id.split(":")[0]), str(r.remaining))
        for r in ShareReservation.objects.filter(remaining__gt=0)
        if status.get(r.order_id.split(":")[0]) not in Order.OPEN
    ]
    held = dict(
        LedgerAccount.objects.filter(kind=LedgerAccount.Kind.CASH_HELD).values_list("account_id", "balance")
    )
    holds = dict(
        CashHold.objects.values("account_id").annotate(s=Sum("remaining")).values_list("account_id", "s")
    )
    mismatch = [(str(a), str(held.get(a, ZERO)), str(holds.get(a, ZERO))) for a in set(held) | set(holds)
                if held.get(a, ZERO) != holds.get(a, ZERO)]  # fmt: skip
    return [
        Check("cash held = sum of open holds per account", not mismatch, _first(mismatch)),
        Check("no hold left on a closed order", not stale_holds, _first(stale_holds)),
        Check("no share reservation left on a closed order", not stale_res, _first(stale_res)),
    ]


def check_books(symbols: Iterable[str]) -> list[Check]:
    """No crossed book: in the projection (open limit orders) and in the market-data L2 book (Redis)."""
    from django.db.models import Max, Min

    from apps.marketdata.selectors import orderbook
    from apps.orders.models import Order

    crossed_db, crossed_md = [], []
    resting = Order.objects.filter(
        type=Order.Type.LIMIT, status__in=["new", "partially_filled", "accepted"], parent__isnull=True
    )
    for sym in symbols:
        bid = resting.filter(symbol=sym, side="buy").aggregate(p=Max("limit_price"))["p"]
        ask = resting.filter(symbol=sym, side="sell").aggregate(p=Min("limit_price"))["p"]
        if bid is not None and ask is not None and bid >= ask:
            crossed_db.append((sym, str(bid), str(ask)))
        book = orderbook(sym, depth=1)
        if book["b"] and book["a"] and Decimal(str(book["b"][0]["p"])) >= Decimal(str(book["a"][0]["p"])):
            crossed_md.append((sym, book["b"][0], book["a"][0]))
    return [
        Check("no crossed book (open limit orders)", not crossed_db, _first(crossed_db)),
        Check("no crossed book (market-data L2)", not crossed_md, _first(crossed_md)),
    ]


def check_pipeline() -> list[Check]:
    from apps.core.models import StoredEvent
    from apps.kyc.models import Transfer
    from apps.orders.models import Order

    unpublished = StoredEvent.objects.filter(published_at__isnull=True).count()
    pending = list(
        Order.objects.filter(status__in=["pending_new", "pending_cancel", "pending_replace"]).values_list(
            "id", "status"
        )[:5]
    )
    stuck = Transfer.objects.filter(status__in=["QUEUED", "PENDING"]).count()
    return [
        Check("outbox empty (no unpublished StoredEvent)", unpublished == 0, f"{unpublished} unpublished"),
        Check(
            "no order left pending (every command reached the engine and back)", not pending, _first(pending)
        ),
        Check("every transfer reached a final state", stuck == 0, f"{stuck} queued/pending"),
    ]


def check_engine_twin() -> list[Check]:
    """The crashed-and-recovered engine equals an uncrashed twin fed the same commands (``apps.orders.engine_twin``)."""
    from apps.orders.engine_twin import engine_twin_compare

    result = engine_twin_compare()
    return [
        Check(
            "engine events = uncrashed twin's (orders.events one for one by event id and bytes)",
            result.events_ok and result.twin_events == result.live_events,
            result.events_detail(),
        ),
        Check(
            "engine state = uncrashed twin's (state hash at each partition's last snapshot)",
            result.state_ok,
            result.state_detail(),
        ),
    ]


# ------------------------------------------------------------------------------------------- the history


def check_history(history: list[dict[str, Any]]) -> list[Check]:
    from django.db.models import Count

    from apps.kyc.models import Transfer
    from apps.orders.models import Order

    done = [h for h in history if h["phase"] == "complete"]
    invoked = {h["key"] for h in history if h["phase"] == "invoke"}
    incomplete = invoked - {h["key"] for h in done}
    order_ids = {str(i) for i in Order.objects.values_list("id", flat=True)}
    by_key = dict(
        Order.objects.filter(client_order_id__in=[h["key"] for h in done if h["op"] == "submit"])
        .values("client_order_id")
        .annotate(n=Count("id"))
        .values_list("client_order_id", "n")
    )
    lost = [
        h["key"]
        for h in done
        if h["op"] in ("submit", "replace") and h["outcome"] == "ok" and h.get("id") not in order_ids
    ]
    twice = [(k, n) for k, n in by_key.items() if n > 1]
    unknown_submits = [h["key"] for h in done if h["op"] == "submit" and h["outcome"] == "unknown"]
    unresolved = [k for k in unknown_submits if by_key.get(k, 0) > 1]
    fail_created = [
        h["key"] for h in done if h["op"] == "submit" and h["outcome"] == "fail" and by_key.get(h["key"], 0)
    ]
    transfer_ids = {str(i) for i in Transfer.objects.values_list("id", flat=True)}
    lost_transfers = [
        h["key"]
        for h in done
        if h["op"] == "transfer" and h["outcome"] == "ok" and str(h.get("id")) not in transfer_ids
    ]
    cancel_ok = [h for h in done if h["op"] == "cancel" and h["outcome"] == "ok"]
    status = {str(k): v for k, v in Order.objects.values_list("id", "status")}
    cancel_open = [h["target"] for h in cancel_ok if status.get(h["target"]) in Order.OPEN]
    return [
        Check("every invoked operation completed in the history", not incomplete, _first(incomplete)),
        Check("no acknowledged order lost", not lost, _first(lost)),
        Check("no order created twice per key", not twice, _first(twice)),
        Check(f"every unknown submit resolves to zero or one order ({len(unknown_submits)} unknown)",
              not unresolved, _first(unresolved)),
        Check("no order created by a refused submit", not fail_created, _first(fail_created)),
        Check("no acknowledged transfer lost", not lost_transfers, _first(lost_transfers)),
        Check("every acknowledged cancel ends the order", not cancel_open, _first(cancel_open)),
    ]  # fmt: skip


def audit(*, history_path: Path, symbols: Iterable[str], seed_shares: Decimal) -> list[Check]:
    history = history_load(history_path)
    steps: list[Callable[[], list[Check]]] = [
        check_ledger,
        lambda: check_conservation(seed_shares),
        check_fills,
        check_holds,
        lambda: check_books(list(symbols)),
        check_pipeline,
        check_engine_twin,
        lambda: check_history(history),
    ]
    checks: list[Check] = []
    for step in steps:
        try:
            checks.extend(step())
        except Exception as exc:
            checks.append(Check(getattr(step, "__name__", "check"), False, f"raised {exc!r}"))
    return checks
