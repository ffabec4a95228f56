"""Portfolio reads: the daily equity series (Alpaca's ``GET /v2/account/portfolio/history``) and positions valued
at the latest price (unrealized P&L).

Invariants:
- Equity on a session date = the account's cash (settled + unsettled + held) + every position (settled +
  unsettled shares) x the symbol's close that day, both from the ledger: postings with ``effective_date`` up to
  that date (trade-date accounting; settlement moves nothing between the two totals).
- Closes come from ``apps.marketdata`` 1Day bars, carried forward over days without a bar; before a symbol's
  first bar (or without bars) its reference price stands in.
- ``profit_loss`` excludes money moved in or out (CSD, CSW, JNLC after the first day): deposits are not profit.
  ``profit_loss_pct`` = profit_loss / (base_value + net money moved in since), 0 while that is not positive.
"""

from __future__ import annotations

import importlib
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from django.utils import timezone

from apps.accounts.models import BrokerageAccount
from apps.core.errors import ValidationError
from apps.core.markettime import NEW_YORK, SUPPORTED_END, SUPPORTED_START, XNYSCalendar
from apps.core.money import CENT, WIDE
from apps.settlement.models import CURRENCY, JournalEntry, LedgerAccount, Posting
from apps.settlement.selectors import positions
from apps.settlement.services import _months_before

Kind = LedgerAccount.Kind
ZERO = Decimal(0)
PCT_QUANTUM = Decimal("0.000001")
FLOW_TYPES = (JournalEntry.EntryType.CSD, JournalEntry.EntryType.CSW, JournalEntry.EntryType.JNLC)
_PERIOD = re.compile(r"^([1-9][0-9]{0,2})([DWMA])$")
_XNYS = XNYSCalendar()


@dataclass(frozen=True, slots=True)
class PortfolioHistory:
    timestamp: list[int]
    equity: list[Decimal]
    profit_loss: list[Decimal]
    profit_loss_pct: list[Decimal]
    base_value: Decimal
    timeframe: str


def period_start(period: str, end: date) -> date:
    m = _PERIOD.match(period)
    if m is None:
        raise ValidationError("period must look like 1D, 2W, 3M or 1A", field="period")
    n, unit = int(m.group(1)), m.group(2)
    if unit == "D":
        return end - timedelta(days=n)
    if unit == "W":
        return end - timedelta(weeks=n)
    return _months_before(end, n * (12 if unit == "A" else 1))


def _closes(symbols: list[str], start: date, end: date) -> dict[str, dict[date, Decimal]]:
    """1Day closes by symbol and New York date (bars start at New York midnight)."""
    md = importlib.import_module("apps.marketdata.selectors")
    out: dict[str, dict[date, Decimal]] = defaultdict(dict)
    if not symbols:
        return out
    token: str | None = None
    begin = datetime.combine(start, time(0), NEW_YORK)
    finish = datetime.combine(end, time(0), NEW_YORK)
    while True:
        page = md.bars_page(
            symbols=symbols, timeframe="1Day", start=begin, end=finish, limit=1000, page_token=token
        )
        for symbol, bars in page.bars.items():
            for bar in bars:
                ts = datetime.fromisoformat(bar["t"].replace("Z", "+00:00"))
                out[symbol][ts.astimezone(NEW_YORK).date()] = Decimal(bar["c"])
        token = page.next_page_token
        if not token:
            return out


def _reference_price(symbol: str) -> Decimal | None:
    md = importlib.import_module("apps.marketdata.selectors")
    price: Decimal | None = md.reference_price(symbol)
    return price


def portfolio_history(
    account: BrokerageAccount, *, period: str = "1M", timeframe: str = "1D", date_end: date | None = None
) -> PortfolioHistory:
    if timeframe != "1D":
        raise ValidationError("only the 1D timeframe is available", field="timeframe")
    end = date_end or timezone.now().astimezone(NEW_YORK).date()
    if not SUPPORTED_START <= end <= SUPPORTED_END:
        raise ValidationError(
            f"date_end must be within the market calendar, {SUPPORTED_START} to {SUPPORTED_END}",
            field="date_end",
            error="date_out_of_calendar_range",
            rule="market_calendar_range",
            details={"start": SUPPORTED_START.isoformat(), "end": SUPPORTED_END.isoformat()},
        )
    start = period_start(period, end)
    sessions = [s.date for s in _XNYS.sessions_between(start + timedelta(days=1), end)]
    if not sessions:
        return PortfolioHistory([], [], [], [], ZERO, timeframe)
    # Ledger movements per day: cash, shares per symbol, and money moved in/out.
    cash_by_day: dict[date, Decimal] = defaultdict(Decimal)
    shares_by_day: dict[tuple[str, date], Decimal] = defaultdict(Decimal)
    flows_by_day: dict[date, Decimal] = defaultdict(Decimal)
    rows = (
        Posting.objects.filter(ledger_account__account=account, entry__effective_date__lte=end)
        .values_list("ledger_account__kind", "asset", "entry__effective_date", "entry__entry_type", "amount")
        .order_by()
    )
    for kind, asset, day, entry_type, amount in rows:
        if kind in LedgerAccount.CASH_KINDS and asset == CURRENCY:
            cash_by_day[day] += amount
            if entry_type in FLOW_TYPES:
                flows_by_day[day] += amount
        elif kind in (Kind.SEC_SETTLED, Kind.SEC_UNSETTLED):
            shares_by_day[(asset, day)] += amount
    symbols = sorted({s for s, _ in shares_by_day})
    closes = _closes(symbols, sessions[0] - timedelta(days=10), end)
    cash = sum((v for d, v in cash_by_day.items() if d < sessions[0]), ZERO)
    shares: dict[str, Decimal] = defaultdict(Decimal)
    for (symbol, day), qty in shares_by_day.items():
        if day < sessions[0]:
            shares[symbol] += qty
    last_close: dict[str, Decimal | None] = {}
    for symbol in symbols:
        before = [d for d in closes.get(symbol, {}) if d < sessions[0]]
        last_close[symbol] = closes[symbol][max(before)] if before else _reference_price(symbol)
    equity: list[Decimal] = []
    flows_cum: list[Decimal] = []
    flows = ZERO
    for i, day in enumerate(sessions):
        # Days between sessions (weekends, holidays) fold into the next session.
        lo = sessions[i - 1] if i else day - timedelta(days=1)
        cash += sum((v for d, v in cash_by_day.items() if lo < d <= day), ZERO)
        for (symbol, d), qty in shares_by_day.items():
            if lo < d <= day:
                shares[symbol] += qty
        if i:
            flows += sum((v for d, v in flows_by_day.items() if lo < d <= day), ZERO)
        value = cash
        for symbol, qty in shares.items():
            if qty == 0:
                continue
            price = closes.get(symbol, {}).get(day) or last_close.get(symbol)
            last_close[symbol] = price
            value = WIDE.add(value, WIDE.multiply(qty, price or ZERO))
        equity.append(value.quantize(CENT, rounding=ROUND_HALF_EVEN))
        flows_cum.append(flows)
    base = equity[0]
    pl = [(e - base - f).quantize(CENT) for e, f in zip(equity, flows_cum, strict=True)]
    pct = [
        (p / (base + f)).quantize(PCT_QUANTUM, rounding=ROUND_HALF_EVEN) if base + f > 0 else ZERO
        for p, f in zip(pl, flows_cum, strict=True)
    ]
    stamps = [int(datetime.combine(d, time(0), NEW_YORK).timestamp()) for d in sessions]
    return PortfolioHistory(stamps, equity, pl, pct, base, timeframe)


@dataclass(frozen=True, slots=True)
class PositionValuation:
    symbol: str
    qty: Decimal
    avg_entry_price: Decimal
    cost_basis: Decimal
    current_price: Decimal
    market_value: Decimal
    unrealized_pl: Decimal
    unrealized_plpc: Decimal


def latest_price(symbol: str) -> Decimal | None:
    """The last trade (Redis, else the newest Trade row), else the reference price."""
    md = importlib.import_module("apps.marketdata.selectors")
    trade: dict[str, Any] | None = md.latest_trade(symbol)
    if trade is not None and trade.get("p") is not None:
        return Decimal(str(trade["p"]))
    return _reference_price(symbol)


def position_valuations(account: BrokerageAccount) -> list[PositionValuation]:
    """Open positions at the latest price: market value and unrealized P&L against the lots' cost basis."""
    out: list[PositionValuation] = []
    for p in positions(account):
        price = latest_price(p.symbol) or p.avg_entry_price
        value = WIDE.multiply(p.qty, price).quantize(CENT, rounding=ROUND_HALF_EVEN, context=WIDE)
        pl = value - p.cost_basis.quantize(CENT, rounding=ROUND_HALF_EVEN)
        plpc = (pl / p.cost_basis).quantize(PCT_QUANTUM, rounding=ROUND_HALF_EVEN) if p.cost_basis else ZERO
        out.append(
            PositionValuation(
                symbol=p.symbol,
                qty=p.qty,
                avg_entry_price=p.avg_entry_price,
                cost_basis=p.cost_basis,
                current_price=price,
                market_value=value,
                unrealized_pl=pl,
                unrealized_plpc=plpc,
            )
        )
    return out
