"""Reference price feed for the demo market: daily OHLCV bars replayed as a deterministic intraday path.

Pure Python (no Django import) so the market-maker, the marketdata publisher and tests can all use it.

Invariants
- Prices are ``Decimal`` parsed from the CSV text, never via ``float``. Volumes are ``int``.
- A loaded ``DailyBar`` is consistent: ``0 < low <= min(open, close) <= max(open, close) <= high`` and
  ``volume > 0``; bars per symbol are strictly increasing by date. Rows that break this are skipped (or,
  where the fix is lossless, repaired) and every skip/repair is logged with its reason.
- ``intraday_path(bar)`` is a pure function of ``(bar, seed, points)``: it starts at the bar's open, ends at
  its close, never leaves ``[low, high]``, and takes the values ``high`` and ``low`` at exactly one point each
  (unless open and close both equal the same extreme, which forces two touches). "open/high/low/close" here
  means the bar's prices on the $0.01 tick; 89% of the source rows are already on tick, the rest have
  sub-penny prices (e.g. ``14.2675``) that are rounded half-even for the synthetic path only.
- The path uses only integer arithmetic on ticks and integer draws from ``random.Random`` seeded by
  ``sha256(seed:symbol:date)``, so every process and platform (same CPython minor version) computes the same
  path.

Replay clock (``HistoricalReplaySource``)
- Callers pass *wall-clock* instants (tz-aware), like they would to a real vendor feed.
- ``elapsed = ts - clock_start`` (real). Simulated session time ``= elapsed * speed``. One historical trading
  session is 390 simulated minutes (09:30-16:00 New York) and is split into ``points`` equal slots (default
  390 one-minute slots); slot ``i`` shows path point ``i``. Sessions follow each other back to back (no
  overnight pause), so one historical day lasts ``390 min / speed`` of real time. The default ``speed`` is 39:
  one historical day per 10 real minutes, one path point per ~1.54 real seconds.
- Day ``k`` (counting from ``clock_start``) of a symbol is its ``(s + k) mod n``-th bar, where ``s`` is the
  index of its first bar on or after ``history_start`` and ``n`` its number of bars: the replay wraps around
  to the symbol's first bar when its data ends. Symbols with equal calendars (AAPL, MSFT, IBM) stay on the
  same historical date; symbols with shorter histories (FB) wrap on their own cycle.
- The mapping is total (instants before ``clock_start`` count backwards) and monotone: a later instant
  never maps to an earlier slot, and slot boundaries are exact to the microsecond (rational arithmetic).
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
import itertools
import logging
import math
import os
import random
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo

__all__ = [
    "DEFAULT_POINTS",
    "DEFAULT_SEED",
    "DEFAULT_SPEED",
    "TICK",
    "DailyBar",
    "HistoricalReplaySource",
    "LoadResult",
    "PriceSource",
    "ReplayPosition",
    "RowIssue",
    "UnknownSymbolError",
    "bar_on_tick",
    "intraday_path",
    "load_daily_bars",
    "parse_daily_bars",
    "path_seed",
]

logger = logging.getLogger(__name__)

TICK = Decimal("0.01")
SESSION_MINUTES = 390
SESSION_OPEN = time(9, 30)
EXCHANGE_TZ = ZoneInfo("America/New_York")
DEFAULT_POINTS = 390
DEFAULT_SPEED = 39  # 390 simulated minutes per 10 real minutes
DEFAULT_SEED = "demo-v1"

_SESSION_US = SESSION_MINUTES * 60 * 1_000_000
_REQUIRED_COLUMNS = ("Ticker", "Date", "Open", "High", "Low", "Close", "Volume")
# ASCII digits only: no sign, exponent, underscore, NaN/Infinity or non-ASCII digits (Decimal accepts all).
_PRICE_RE = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,8})?")
_VOLUME_RE = re.compile(r"([0-9]{1,15})(\.0+)?")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SYMBOL_RE = re.compile(r"[A-Z][A-Z0-9.]{0,9}")


class UnknownSymbolError(LookupError):
    """The feed has no data for the requested symbol."""


@dataclass(frozen=True, slots=True)
class DailyBar:
    """One session's unadjusted OHLCV. Construction enforces the OHLC ordering invariant."""

    symbol: str
    date: date
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int

    def __post_init__(self) -> None:
        problem = _ohlc_problem(self.open, self.high, self.low, self.close)
        if problem is not None:
            raise ValueError(f"{self.symbol} {self.date}: {problem}")
        if self.volume < 0:
            raise ValueError(f"{self.symbol} {self.date}: negative volume")


@dataclass(frozen=True, slots=True)
class RowIssue:
    """A source row that was skipped or repaired, with the reason (also logged)."""

    line: int
    symbol: str
    reason: str
    detail: str


@dataclass(slots=True)
class LoadResult:
    bars: dict[str, list[DailyBar]] = field(default_factory=dict)
    skipped: list[RowIssue] = field(default_factory=list)
    repaired: list[RowIssue] = field(default_factory=list)


def _ohlc_problem(o: Decimal, h: Decimal, low: Decimal, c: Decimal) -> str | None:
    if not all(p.is_finite() and p > 0 for p in (o, h, low, c)):
        return "non-positive or non-finite price"
    if h < max(o, c):
        return f"high {h} < max(open, close) {max(o, c)}"
    if low > min(o, c):
        return f"low {low} > min(open, close) {min(o, c)}"
    return None


def parse_daily_bars(lines: Iterable[str], symbols: Iterable[str] | None = None) -> LoadResult:
    """Parse CSV text (header ``Ticker,Date,Open,High,Low,Close,Volume[,...]``) into validated bars.

    Skipped (reason): ``columns``, ``symbol``, ``date``, ``price``, ``ohlc``, ``volume``, ``zero_volume``
    (no trades: the prices are stale quotes, not a session to replay), ``duplicate`` (first row wins).
    Repaired: ``volume_format`` (``"123.0"`` -> 123).
    """
    wanted = None if symbols is None else frozenset(symbols)
    result = LoadResult()
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise ValueError("empty price file")
    missing = [c for c in _REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"price file lacks columns {missing}")
    col = {name: header.index(name) for name in _REQUIRED_COLUMNS}
    seen: set[tuple[str, date]] = set()

    def skip(line: int, symbol: str, reason: str, detail: str) -> None:
        result.skipped.append(RowIssue(line, symbol, reason, detail))
        logger.warning("price row skipped: line=%d symbol=%s reason=%s %s", line, symbol, reason, detail)

    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(header):
            skip(line, "", "columns", f"{len(row)} fields, expected {len(header)}")
            continue
        symbol = row[col["Ticker"]]
        if wanted is not None and symbol not in wanted:
            continue
        if not _SYMBOL_RE.fullmatch(symbol):
            skip(line, symbol, "symbol", repr(symbol))
            continue
        raw_date = row[col["Date"]]
        try:
            if not _DATE_RE.fullmatch(raw_date):
                raise ValueError(raw_date)
            day = date.fromisoformat(raw_date)
        except ValueError:
            skip(line, symbol, "date", repr(raw_date))
            continue
        raw_prices = [row[col[k]] for k in ("Open", "High", "Low", "Close")]
        bad = [p for p in raw_prices if not _PRICE_RE.fullmatch(p)]
        if bad:
            skip(line, symbol, "price", f"{day} unparsable {bad!r}")
            continue
        o, h, low, c = (Decimal(p) for p in raw_prices)
        problem = _ohlc_problem(o, h, low, c)
        if problem is not None:
            skip(line, symbol, "ohlc", f"{day} {problem}")
            continue
        raw_volume = row[col["Volume"]]
        vol_match = _VOLUME_RE.fullmatch(raw_volume)
        if vol_match is None:
            skip(line, symbol, "volume", f"{day} {raw_volume!r}")
            continue
        volume = int(vol_match.group(1))
        if volume == 0:
            skip(line, symbol, "zero_volume", str(day))
            continue
        if (symbol, day) in seen:
            skip(line, symbol, "duplicate", str(day))
            continue
        if vol_match.group(2):
            result.repaired.append(
                RowIssue(line, symbol, "volume_format", f"{day} {raw_volume!r} -> {volume}")
            )
            logger.info(
                "price row repaired: line=%d symbol=%s volume %r -> %d", line, symbol, raw_volume, volume
            )
        seen.add((symbol, day))
        result.bars.setdefault(symbol, []).append(DailyBar(symbol, day, o, h, low, c, volume))

    for symbol, bars in result.bars.items():
        if any(a.date > b.date for a, b in itertools.pairwise(bars)):
            logger.info("price rows for %s were out of date order; sorted", symbol)
            bars.sort(key=lambda b: b.date)
    if wanted is not None:
        for symbol in sorted(wanted - result.bars.keys()):
            logger.warning("no price rows for requested symbol %s", symbol)
    if result.skipped or result.repaired:
        logger.warning("price file: %d rows skipped, %d repaired", len(result.skipped), len(result.repaired))
    return result


def load_daily_bars(
    path: str | os.PathLike[str], symbols: Iterable[str] | None = None
) -> dict[str, list[DailyBar]]:
    """Load an OHLCV CSV (gzipped or not): bars per symbol, sorted by date. See ``parse_daily_bars``."""
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    binary = gzip.open(path, "rb") if gzipped else open(path, "rb")  # noqa: SIM115 - closed below
    with binary, io.TextIOWrapper(binary, encoding="ascii", newline="") as text:
        return parse_daily_bars(text, symbols).bars


# --- intraday path ---------------------------------------------------------------------------------------


def path_seed(symbol: str, day: date, seed: str = DEFAULT_SEED) -> int:
    """Stable across processes (unlike ``hash()``, which is salted per process)."""
    digest = hashlib.sha256(f"{seed}:{symbol}:{day.isoformat()}".encode()).digest()
    return int.from_bytes(digest[:16], "big")


def _to_ticks(price: Decimal) -> int:
    # ROUND_HALF_EVEN is used here only: the path is synthetic data generated from vendor history, not a
    # client's price, so rounding sub-penny vendor prices to the tick is a presentation choice.
    return int(price.quantize(TICK, rounding=ROUND_HALF_EVEN).scaleb(2))


def _from_ticks(ticks: int) -> Decimal:
    return Decimal(ticks).scaleb(-2)


def bar_on_tick(bar: DailyBar) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """(open, high, low, close) on the $0.01 tick, as the intraday path uses them (rounding is monotone, so
    the OHLC ordering survives)."""
    return (
        _from_ticks(_to_ticks(bar.open)),
        _from_ticks(_to_ticks(bar.high)),
        _from_ticks(_to_ticks(bar.low)),
        _from_ticks(_to_ticks(bar.close)),
    )


def _fold(x: int, lo: int, hi: int) -> int:
    """Reflect ``x`` into ``[lo, hi]`` (mirror at the bounds, as a reflected random walk)."""
    if lo >= hi:
        return lo
    period = 2 * (hi - lo)
    m = (x - lo) % period
    return lo + (m if m <= hi - lo else period - m)


def _div_round_half_even(n: int, d: int) -> int:
    """``n / d`` rounded half-even, in integers (``d > 0``)."""
    q, r = divmod(n, d)
    twice = 2 * r
    if twice > d or (twice == d and q % 2 == 1):
        return q + 1
    return q


def _path_ticks(o: int, h: int, low: int, c: int, points: int, rng: random.Random) -> list[int]:
    if h == low:
        return [o] * points
    # Which extreme comes first: forced when open or close sits on an extreme, else a coin flip.
    if o == h or c == low:
        high_first = True
    elif o == low or c == h:
        high_first = False
    else:
        high_first = rng.getrandbits(1) == 1
    first, second = (h, low) if high_first else (low, h)
    last = points - 1
    if o == first and c == second:
        i1, i2 = 0, last
    elif o == first:
        i1, i2 = 0, rng.randrange(1, last)
    elif c == second:
        i1, i2 = rng.randrange(1, last), last
    else:
        i1, i2 = sorted(rng.sample(range(1, last), 2))
    anchors = sorted({0: o, i1: first, i2: second, last: c}.items())

    # Non-anchor points stay strictly inside (low, high) so each extreme is touched only at its anchor.
    # A one-tick range has no strict interior; then the path may revisit the extremes.
    inner_lo, inner_hi = (low + 1, h - 1) if h - low >= 2 else (low, h)
    # Integer random-walk step so the walk's spread over a session is about half the day's range.
    step = max(1, math.isqrt(3 * (h - low) ** 2 // (4 * points)))
    out = [o] * points
    for (p, a), (q, b) in itertools.pairwise(anchors):
        k = q - p
        walk = [0]
        for _ in range(k):
            walk.append(walk[-1] + rng.randint(-step, step))
        excess = walk[k] - (b - a)
        for j in range(1, k):
            # Brownian bridge: subtract the linear share of the walk's miss so it lands exactly on b.
            out[p + j] = _fold(a + walk[j] - _div_round_half_even(j * excess, k), inner_lo, inner_hi)
        out[q] = b
    return out


@functools.lru_cache(maxsize=8192)
def intraday_path(
    bar: DailyBar, *, seed: str = DEFAULT_SEED, points: int = DEFAULT_POINTS
) -> tuple[Decimal, ...]:
    """The deterministic intraday path of ``bar``: ``points`` prices on the $0.01 tick (see module doc)."""
    if points < 4:
        raise ValueError("points must be >= 4")
    o, h, low, c = (_to_ticks(p) for p in (bar.open, bar.high, bar.low, bar.close))
    rng = random.Random(path_seed(bar.symbol, bar.date, seed))  # noqa: S311 - reproducible, not secret
    return tuple(_from_ticks(t) for t in _path_ticks(o, h, low, c, points, rng))


# --- sources ---------------------------------------------------------------------------------------------


@runtime_checkable
class PriceSource(Protocol):
    """A reference price feed. ``ts`` is a tz-aware wall-clock instant; a vendor feed can implement this."""

    def symbols(self) -> list[str]: ...

    def price_at(self, symbol: str, ts: datetime) -> Decimal: ...

    def ticks(self, symbol: str, start: datetime, end: datetime) -> Iterator[tuple[datetime, Decimal]]:
        """(ts, price) in ``[start, end)``: the price in force at ``start``, then each change of point."""
        ...


@dataclass(frozen=True, slots=True)
class ReplayPosition:
    """Where a wall-clock instant lands in the replay for one symbol."""

    symbol: str
    bar: DailyBar
    point: int  # index into intraday_path(bar)
    cycle: int  # how many times this symbol's history has wrapped (negative before clock_start)
    simulated_at: datetime  # historical instant (America/New_York) of the point's slot start
    price: Decimal


def _to_fraction(value: int | float | Decimal | Fraction) -> Fraction:
    if isinstance(value, float):
        # Through the shortest repr, so 0.1 means 1/10 rather than its binary approximation.
        return Fraction(repr(value))
    if isinstance(value, Decimal) and not value.is_finite():
        raise ValueError("speed must be finite")
    return Fraction(value)


def _require_aware(ts: datetime, name: str) -> None:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


class HistoricalReplaySource:
    """Replays daily bars as deterministic intraday paths on a scaled clock (mapping: see module doc)."""

    def __init__(
        self,
        bars: Mapping[str, list[DailyBar]],
        clock_start: datetime,
        speed: int | float | Decimal | Fraction = DEFAULT_SPEED,
        *,
        history_start: date | None = None,
        seed: str = DEFAULT_SEED,
        points: int = DEFAULT_POINTS,
    ) -> None:
        _require_aware(clock_start, "clock_start")
        self._speed = _to_fraction(speed)
        if self._speed <= 0:
            raise ValueError("speed must be positive")
        if points < 4:
            raise ValueError("points must be >= 4")
        # Simulated slots per real microsecond; each slot must last at least 1 real microsecond.
        self._rate = self._speed * points / _SESSION_US
        if self._rate > 1:
            raise ValueError("speed too high: a path point would last under one microsecond")
        self._bars: dict[str, tuple[DailyBar, ...]] = {}
        self._start: dict[str, int] = {}
        for symbol, series in bars.items():
            if not series:
                raise ValueError(f"no bars for {symbol}")
            if any(b.symbol != symbol for b in series):
                raise ValueError(f"bars under {symbol} belong to another symbol")
            dates = [b.date for b in series]
            if any(a >= b for a, b in itertools.pairwise(dates)):
                raise ValueError(f"bars for {symbol} must be strictly increasing by date")
            self._bars[symbol] = tuple(series)
            self._start[symbol] = (
                0 if history_start is None else bisect_left(dates, history_start) % len(dates)
            )
        self._clock_start = clock_start
        self._seed = seed
        self._points = points

    @classmethod
    def with_day_duration(
        cls,
        bars: Mapping[str, list[DailyBar]],
        clock_start: datetime,
        day_duration: timedelta,
        *,
        history_start: date | None = None,
        seed: str = DEFAULT_SEED,
        points: int = DEFAULT_POINTS,
    ) -> HistoricalReplaySource:
        """Configure by "one historical day per ``day_duration`` of real time" instead of a speed factor."""
        real_us = day_duration // timedelta(microseconds=1)
        if real_us <= 0:
            raise ValueError("day_duration must be positive")
        speed = Fraction(_SESSION_US, real_us)
        return cls(bars, clock_start, speed, history_start=history_start, seed=seed, points=points)

    @property
    def speed(self) -> Fraction:
        return self._speed

    @property
    def day_duration(self) -> timedelta:
        """Real time one historical session lasts (rounded to the microsecond)."""
        return timedelta(microseconds=round(_SESSION_US / self._speed))

    def symbols(self) -> list[str]:
        return sorted(self._bars)

    def _series(self, symbol: str) -> tuple[DailyBar, ...]:
        try:
            return self._bars[symbol]
        except KeyError:
            raise UnknownSymbolError(symbol) from None

    def _slot(self, ts: datetime) -> int:
        """Global slot index of a wall-clock instant: floor(elapsed_us * rate). Monotone in ``ts``."""
        _require_aware(ts, "ts")
        elapsed_us = (ts - self._clock_start) // timedelta(microseconds=1)
        return math.floor(elapsed_us * self._rate)

    def _slot_start(self, slot: int) -> datetime:
        """First wall-clock microsecond whose slot is ``slot`` (exact inverse of ``_slot``)."""
        return self._clock_start + timedelta(microseconds=math.ceil(slot / self._rate))

    def _resolve(self, series: tuple[DailyBar, ...], symbol: str, slot: int) -> tuple[DailyBar, int, int]:
        day, point = divmod(slot, self._points)
        cycle, index = divmod(self._start[symbol] + day, len(series))
        return series[index], point, cycle

    def _price(self, bar: DailyBar, point: int) -> Decimal:
        return intraday_path(bar, seed=self._seed, points=self._points)[point]

    def position(self, symbol: str, ts: datetime) -> ReplayPosition:
        series = self._series(symbol)
        bar, point, cycle = self._resolve(series, symbol, self._slot(ts))
        opened = datetime.combine(bar.date, SESSION_OPEN, tzinfo=EXCHANGE_TZ)
        offset_us = point * _SESSION_US // self._points
        return ReplayPosition(
            symbol=symbol,
            bar=bar,
            point=point,
            cycle=cycle,
            simulated_at=opened + timedelta(microseconds=offset_us),
            price=self._price(bar, point),
        )

    def price_at(self, symbol: str, ts: datetime) -> Decimal:
        series = self._series(symbol)
        bar, point, _ = self._resolve(series, symbol, self._slot(ts))
        return self._price(bar, point)

    def ticks(self, symbol: str, start: datetime, end: datetime) -> Iterator[tuple[datetime, Decimal]]:
        # Validate eagerly (not on first next()) so a bad symbol or naive datetime fails at the call site.
        series = self._series(symbol)
        _require_aware(end, "end")
        return self._ticks(series, symbol, start, self._slot(start), end)

    def _ticks(
        self, series: tuple[DailyBar, ...], symbol: str, start: datetime, slot: int, end: datetime
    ) -> Iterator[tuple[datetime, Decimal]]:
        if end <= start:
            return
        bar, point, _ = self._resolve(series, symbol, slot)
        yield start, self._price(bar, point)
        while True:
            slot += 1
            at = self._slot_start(slot)
            if at >= end:
                return
            bar, point, _ = self._resolve(series, symbol, slot)
            yield at, self._price(bar, point)
