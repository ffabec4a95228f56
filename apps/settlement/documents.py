"""Customer documents: trade confirmations (one per fill) and monthly statements, rendered as HTML.

Every figure comes from the ledger (journal entries, postings, realized gains) of the requesting account only;
another account's fill is simply not found. Amounts are exact decimals formatted for display, never floats.
"""

from __future__ import annotations

import calendar
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from django.db.models import Sum
from django.template.loader import render_to_string
from django.utils import timezone

from apps.accounts.models import BrokerageAccount
from apps.core.errors import NotFound, ValidationError
from apps.core.fields import format_decimal
from apps.core.money import CENT, WIDE
from apps.settlement.activities import ACTIVITY_TYPES, activity_render
from apps.settlement.models import CURRENCY, JournalEntry, LedgerAccount, Posting, RealizedGain
from apps.settlement.portfolio import _closes, _reference_price

Kind = LedgerAccount.Kind
ZERO = Decimal(0)
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def _money(value: Decimal) -> str:
    return f"{value.quantize(CENT, rounding=ROUND_HALF_EVEN):,}"


def confirmation_html(*, account: BrokerageAccount, fill_id: str) -> str:
    """The trade confirmation of one of the account's fills (``NotFound`` for any other fill id)."""
    entry = JournalEntry.objects.filter(
        account=account, source_type="fill", source_id=fill_id, entry_type=JournalEntry.EntryType.FILL
    ).first()
    if entry is None:
        raise NotFound("fill not found", field="fill_id")
    d = entry.details
    notional = Decimal(d["notional"])
    fees = {code: Decimal(v) for code, v in d.get("fees", {}).items()}
    fee_total = sum(fees.values(), ZERO)
    net = notional + fee_total if d["side"] == "buy" else notional - fee_total
    return render_to_string(
        "settlement/confirmation.html",
        {
            "account": account,
            "fill_id": fill_id,
            "order_id": d["order_id"],
            "side": d["side"].upper(),
            "symbol": d["symbol"],
            "qty": format_decimal(Decimal(d["qty"])),
            "price": format_decimal(Decimal(d["price"])),
            "gross": _money(notional),
            "fees": [(code, _money(v)) for code, v in sorted(fees.items())],
            "net": _money(net),
            "net_label": "Total cost" if d["side"] == "buy" else "Net proceeds",
            "trade_date": entry.effective_date,
            "settle_date": d.get("settle_date", ""),
            "executed_at": entry.occurred_at,
            "liquidity": d.get("liquidity", ""),
            "generated_at": timezone.now(),
        },
    )


def month_bounds(month: str) -> tuple[date, date]:
    m = _MONTH.match(month or "")
    if m is None:
        raise ValidationError("month must be YYYY-MM", field="month")
    year, mon = int(m.group(1)), int(m.group(2))
    return date(year, mon, 1), date(year, mon, calendar.monthrange(year, mon)[1])


@dataclass(frozen=True, slots=True)
class _Holding:
    symbol: str
    qty: str
    price: str
    value: str


def _cash_as_of(account: BrokerageAccount, day: date) -> Decimal:
    total = Posting.objects.filter(
        ledger_account__account=account,
        ledger_account__kind__in=LedgerAccount.CASH_KINDS,
        asset=CURRENCY,
        entry__effective_date__lte=day,
    ).aggregate(s=Sum("amount"))["s"]
    return total or ZERO


def _holdings_as_of(account: BrokerageAccount, day: date) -> tuple[list[_Holding], Decimal]:
    shares: dict[str, Decimal] = defaultdict(Decimal)
    for asset, amount in Posting.objects.filter(
        ledger_account__account=account,
        ledger_account__kind__in=[Kind.SEC_SETTLED, Kind.SEC_UNSETTLED],
        entry__effective_date__lte=day,
    ).values_list("asset", "amount"):
        shares[asset] += amount
    held = sorted(s for s, q in shares.items() if q != 0)
    closes = _closes(held, day - timedelta(days=14), day)
    out: list[_Holding] = []
    total = ZERO
    for symbol in held:
        series = closes.get(symbol, {})
        price = series[max(series)] if series else _reference_price(symbol)
        value = WIDE.multiply(shares[symbol], price) if price is not None else ZERO
        total = WIDE.add(total, value)
        out.append(
            _Holding(
                symbol=symbol,
                qty=format_decimal(shares[symbol]),
                price=format_decimal(price) if price is not None else "n/a",
                value=_money(value),
            )
        )
    return out, total


def statement_html(*, account: BrokerageAccount, month: str) -> str:
    """The monthly statement: cash opening/closing, every activity, month-end holdings, realized gains."""
    start, end = month_bounds(month)
    entries = list(
        JournalEntry.objects.filter(
            account=account, entry_type__in=ACTIVITY_TYPES, effective_date__gte=start, effective_date__lte=end
        ).order_by("effective_date", "occurred_at", "pk")
    )
    activities: list[dict[str, Any]] = []
    for e in entries:
        a = activity_render(e)
        if e.entry_type == JournalEntry.EntryType.FILL:
            # Principal only: the fill's fees are their own FEE rows.
            principal = Decimal(e.details["notional"])
            a["net_amount"] = _money(-principal if e.details["side"] == "buy" else principal)
        activities.append(
            {
                "date": e.effective_date,
                "type": e.entry_type,
                "description": e.description,
                "symbol": a.get("symbol", ""),
                "qty": a.get("qty", ""),
                "price": a.get("price", ""),
                "amount": a.get("net_amount", ""),
            }
        )
    gains = list(
        RealizedGain.objects.filter(lot__account=account, closed_date__gte=start, closed_date__lte=end)
        .select_related("lot")
        .order_by("closed_date", "pk")
    )
    holdings, holdings_value = _holdings_as_of(account, end)
    opening, closing = _cash_as_of(account, start - timedelta(days=1)), _cash_as_of(account, end)
    return render_to_string(
        "settlement/statement.html",
        {
            "account": account,
            "month": month,
            "start": start,
            "end": end,
            "opening_cash": _money(opening),
            "closing_cash": _money(closing),
            "holdings": holdings,
            "holdings_value": _money(holdings_value),
            "total_value": _money(closing + holdings_value),
            "activities": activities,
            "gains": [
                {
                    "date": g.closed_date,
                    "acquired": g.lot.acquired_date,
                    "symbol": g.lot.symbol,
                    "qty": format_decimal(g.qty),
                    "proceeds": _money(g.proceeds),
                    "cost": _money(g.cost_basis),
                    "gain": _money(g.gain),
                    "term": g.term,
                    "method": g.relief_method,
                }
                for g in gains
            ],
            "realized_total": _money(sum((g.gain for g in gains), ZERO)),
            "generated_at": timezone.now(),
        },
    )
