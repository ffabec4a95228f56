"""Tests for the reference price feed (pure Python: run with ``-p no:django``)."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import random
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from apps.core.datafiles import shared_data_dir

# `-p no:django` skips pytest-django, which is what normally puts the project root on sys.path.
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from apps.marketdata.feed import (  # noqa: E402
    DEFAULT_POINTS,
    DEFAULT_SPEED,
    TICK,
    DailyBar,
    HistoricalReplaySource,
    PriceSource,
    UnknownSymbolError,
    bar_on_tick,
    intraday_path,
    load_daily_bars,
    parse_daily_bars,
)

DATA = shared_data_dir() / "ohlcv" / "bokeh_sampledata_stocks.csv.gz"
HEADER = "Ticker,Date,Open,High,Low,Close,Volume,Adj Close"
GOOD_ROW = "AAPL,2001-01-02,10.00,11.00,9.00,10.50,1000,1.0"
T0 = datetime(2024, 1, 1, 14, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def real_bars() -> dict[str, list[DailyBar]]:
    return load_daily_bars(DATA)


def bar(o: str, h: str, low: str, c: str, *, day: date = date(2001, 1, 2), symbol: str = "TEST") -> DailyBar:
    return DailyBar(symbol, day, Decimal(o), Decimal(h), Decimal(low), Decimal(c), 1000)


def series(symbol: str, n: int, first: date = date(2001, 1, 1)) -> list[DailyBar]:
    """n consecutive synthetic bars with distinct prices, so a day is recognisable by its open."""
    return [
        bar(
            f"{100 + i}.00",
            f"{105 + i}.00",
            f"{95 + i}.00",
            f"{101 + i}.00",
            day=first + timedelta(i),
            symbol=symbol,
        )
        for i in range(n)
    ]


def assert_respects(path: tuple[Decimal, ...], b: DailyBar) -> None:
    o, h, low, c = bar_on_tick(b)
    assert len(path) == DEFAULT_POINTS
    assert path[0] == o
    assert path[-1] == c
    assert max(path) == h
    assert min(path) == low
    assert path.count(h) == 1
    assert path.count(low) == 1
    assert all(p.as_tuple().exponent == -2 and p == p.quantize(TICK) for p in path)


# --- loading ----------------------------------------------------------------------------------------------


def test_real_file_loads_every_row_exactly(real_bars: dict[str, list[DailyBar]]) -> None:
    assert {s: len(b) for s, b in real_bars.items()} == {
        "AAPL": 3270,
        "FB": 196,
        "GOOG": 2148,
        "IBM": 3270,
        "MSFT": 3270,
    }
    first = real_bars["AAPL"][0]
    assert first == DailyBar(
        "AAPL",
        date(2000, 3, 1),
        Decimal("118.56"),
        Decimal("132.06"),
        Decimal("118.5"),
        Decimal("130.31"),
        9616100,
    )
    # Sub-penny vendor prices survive loading exactly (Decimal from text, no float).
    sub_penny = next(b for b in real_bars["AAPL"] if b.date == date(2003, 4, 2))
    assert sub_penny.low == Decimal("14.2675")
    for bars in real_bars.values():
        assert [b.date for b in bars] == sorted({b.date for b in bars})


def test_real_file_has_no_skips_or_repairs() -> None:
    with gzip.open(DATA, "rt", encoding="ascii", newline="") as text:
        result = parse_daily_bars(text)
    assert result.skipped == []
    assert result.repaired == []
    assert sum(len(b) for b in result.bars.values()) == 12154


def test_symbol_filter(real_bars: dict[str, list[DailyBar]], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        only = load_daily_bars(DATA, symbols=["FB", "IBM", "NOPE"])
    assert sorted(only) == ["FB", "IBM"]
    assert only["FB"] == real_bars["FB"]
    assert "no price rows for requested symbol NOPE" in caplog.text


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        pytest.param("AAPL,2001-01-03,10.00,9.50,9.00,10.20,1000,1", "ohlc", id="high-below-open-close"),
        pytest.param("AAPL,2001-01-03,10.00,11.00,10.10,10.20,1000,1", "ohlc", id="low-above-open"),
        pytest.param("AAPL,2001-01-03,10.00,9.00,11.00,10.00,1000,1", "ohlc", id="high-below-low"),
        pytest.param("AAPL,2001-01-03,0,11.00,9.00,10.00,1000,1", "ohlc", id="zero-price"),
        pytest.param("AAPL,2001-01-03,-1,11.00,9.00,10.00,1000,1", "price", id="negative-price"),
        pytest.param("AAPL,2001-01-03,NaN,11.00,9.00,10.00,1000,1", "price", id="nan-price"),
        pytest.param("AAPL,2001-01-03,1e1,11.00,9.00,10.00,1000,1", "price", id="exponent-price"),
        pytest.param("AAPL,2001-01-03,1_0,11.00,9.00,10.00,1000,1", "price", id="underscore-price"),
        pytest.param("AAPL,2001-01-03,\uff11\uff10,11.00,9.00,10.00,1000,1", "price", id="fullwidth-digits"),
        pytest.param("AAPL,2001-01-03,,11.00,9.00,10.00,1000,1", "price", id="empty-price"),
        pytest.param("AAPL,2001-02-30,10.00,11.00,9.00,10.00,1000,1", "date", id="impossible-date"),
        pytest.param("AAPL,20010103,10.00,11.00,9.00,10.00,1000,1", "date", id="compact-date"),
        pytest.param("AAPL,2001-01-03,10.00,11.00,9.00,10.00,0,1", "zero_volume", id="zero-volume"),
        pytest.param("AAPL,2001-01-03,10.00,11.00,9.00,10.00,12.5,1", "volume", id="fractional-volume"),
        pytest.param("AAPL,2001-01-03,10.00,11.00,9.00,10.00,-5,1", "volume", id="negative-volume"),
        pytest.param("AAPL,2001-01-03,10.00,11.00,9.00,10.00", "columns", id="short-row"),
        pytest.param("aapl,2001-01-03,10.00,11.00,9.00,10.00,1000,1", "symbol", id="lowercase-symbol"),
        pytest.param("AAPL,2001-01-02,20.00,21.00,19.00,20.00,1000,1", "duplicate", id="duplicate-date"),
    ],
)
def test_malformed_row_is_skipped_with_logged_reason(
    row: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="apps.marketdata.feed"):
        result = parse_daily_bars([HEADER, GOOD_ROW, row])
    # The good row is kept untouched (first row wins for duplicates); the bad one is gone.
    assert [b.date for b in result.bars["AAPL"]] == [date(2001, 1, 2)]
    assert result.bars["AAPL"][0].open == Decimal("10.00")
    assert [(i.line, i.reason) for i in result.skipped] == [(3, reason)]
    assert result.repaired == []
    assert f"reason={reason}" in caplog.text
    assert "1 rows skipped, 0 repaired" in caplog.text


def test_integral_float_volume_is_repaired_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="apps.marketdata.feed"):
        result = parse_daily_bars([HEADER, "AAPL,2001-01-03,10.00,11.00,9.00,10.00,2500.0,1"])
    assert result.bars["AAPL"][0].volume == 2500
    assert result.skipped == []
    assert [(i.line, i.reason) for i in result.repaired] == [(2, "volume_format")]
    assert "volume '2500.0' -> 2500" in caplog.text


def test_rows_out_of_order_are_sorted() -> None:
    result = parse_daily_bars([HEADER, "AAPL,2001-01-03,10,11,9,10,5,1", GOOD_ROW])
    assert [b.date for b in result.bars["AAPL"]] == [date(2001, 1, 2), date(2001, 1, 3)]


def test_missing_column_is_a_file_error() -> None:
    with pytest.raises(ValueError, match="lacks columns"):
        parse_daily_bars(["Ticker,Date,Open,High,Low,Close", "AAPL,2001-01-02,1,1,1,1"])


@pytest.mark.parametrize("compress", [pytest.param(True, id="gzip"), pytest.param(False, id="plain")])
def test_load_plain_and_gzip(tmp_path: Path, compress: bool) -> None:
    text = f"{HEADER}\n{GOOD_ROW}\n".encode("ascii")
    path = tmp_path / "bars.csv"
    path.write_bytes(gzip.compress(text) if compress else text)
    assert load_daily_bars(path) == {"AAPL": [bar("10.00", "11.00", "9.00", "10.50", symbol="AAPL")]}


@pytest.mark.parametrize(
    ("prices", "match"),
    [
        pytest.param(("10", "9", "8", "10"), "high", id="high-below-open"),
        pytest.param(("10", "12", "10.5", "11"), "low", id="low-above-open"),
        pytest.param(("0", "12", "0", "11"), "non-positive", id="zero"),
    ],
)
def test_daily_bar_enforces_invariant(prices: tuple[str, str, str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        bar(*prices)


# --- intraday paths ---------------------------------------------------------------------------------------


def test_paths_respect_ohlc_on_200_random_real_days(real_bars: dict[str, list[DailyBar]]) -> None:
    every = [b for bars in real_bars.values() for b in bars]
    sample = random.Random(20240501).sample(every, 200)
    assert len({b.symbol for b in sample}) == 5
    for b in sample:
        assert_respects(intraday_path(b), b)


def test_paths_of_sub_penny_days_use_the_nearest_tick(real_bars: dict[str, list[DailyBar]]) -> None:
    off_tick = [
        b for bars in real_bars.values() for b in bars if any(p != p.quantize(TICK) for p in (b.high, b.low))
    ]
    assert len(off_tick) > 50
    half_tick = TICK / 2
    for b in random.Random(7).sample(off_tick, 50):
        path = intraday_path(b)
        assert_respects(path, b)
        assert abs(max(path) - b.high) <= half_tick
        assert abs(min(path) - b.low) <= half_tick


def test_sub_penny_anchors_round_half_even() -> None:
    b = bar("10.025", "10.135", "9.965", "10.045")
    expected = (Decimal("10.02"), Decimal("10.14"), Decimal("9.96"), Decimal("10.04"))
    assert bar_on_tick(b) == expected
    path = intraday_path(b)
    assert (path[0], max(path), min(path), path[-1]) == expected


def test_on_tick_days_hit_raw_prices_exactly(real_bars: dict[str, list[DailyBar]]) -> None:
    b = real_bars["AAPL"][0]
    path = intraday_path(b)
    assert (path[0], max(path), min(path), path[-1]) == (b.open, b.high, b.low, b.close)


@pytest.mark.parametrize(
    "prices",
    [
        pytest.param(("10.00", "10.00", "9.00", "9.50"), id="open-is-high"),
        pytest.param(("9.00", "10.00", "9.00", "9.50"), id="open-is-low"),
        pytest.param(("9.50", "10.00", "9.00", "10.00"), id="close-is-high"),
        pytest.param(("9.50", "10.00", "9.00", "9.00"), id="close-is-low"),
        pytest.param(("10.00", "10.00", "9.00", "9.00"), id="open-high-close-low"),
        pytest.param(("9.00", "10.00", "9.00", "10.00"), id="open-low-close-high"),
        pytest.param(("9.01", "9.02", "9.00", "9.01"), id="two-tick-range"),
        pytest.param(("500.00", "500.05", "499.97", "500.01"), id="narrow-range"),
        pytest.param(("1.00", "40.00", "0.50", "39.00"), id="wide-range"),
    ],
)
def test_edge_bars_touch_each_extreme_once(prices: tuple[str, str, str, str]) -> None:
    for i in range(20):  # several seeds (dates) per shape
        b = bar(*prices, day=date(2001, 1, 2) + timedelta(i))
        assert_respects(intraday_path(b), b)


def test_open_and_close_on_same_extreme_touch_it_twice() -> None:
    b = bar("10.00", "10.00", "9.00", "10.00")
    path = intraday_path(b)
    assert (path[0], path[-1], path.count(Decimal("10.00")), path.count(Decimal("9.00"))) == (
        Decimal("10.00"),
        Decimal("10.00"),
        2,
        1,
    )
    assert all(Decimal("9.00") <= p <= Decimal("10.00") for p in path)


@pytest.mark.parametrize(
    ("prices", "expected"),
    [
        pytest.param(("7.00", "7.00", "7.00", "7.00"), {Decimal("7.00")}, id="flat"),
        pytest.param(("7.00", "7.01", "7.00", "7.01"), {Decimal("7.00"), Decimal("7.01")}, id="one-tick"),
    ],
)
def test_degenerate_ranges_stay_in_range(prices: tuple[str, str, str, str], expected: set[Decimal]) -> None:
    b = bar(*prices)
    path = intraday_path(b)
    assert (path[0], path[-1]) == (b.open, b.close)
    assert set(path) == expected


def test_path_is_deterministic_and_pinned() -> None:
    b = bar("118.56", "132.06", "118.5", "130.31", day=date(2000, 3, 1), symbol="AAPL")
    first = intraday_path(b)
    intraday_path.cache_clear()
    assert intraday_path(b) == first
    # Pinned digest: a change means every running process must be upgraded together.
    digest = hashlib.sha256(",".join(map(str, first)).encode()).hexdigest()
    assert digest == "befa790033159ca8ba4f6fada948eefae184a6cd6009c3ddd32a6d9acb3c9c2a"
    assert intraday_path(b, seed="other") != first
    assert (
        intraday_path(bar("118.56", "132.06", "118.5", "130.31", day=date(2000, 3, 2), symbol="AAPL"))
        != first
    )


def test_path_is_identical_in_another_process() -> None:
    code = (
        "import hashlib, sys; from datetime import date; from decimal import Decimal as D;"
        "from apps.marketdata.feed import DailyBar, intraday_path;"
        "b = DailyBar('AAPL', date(2000, 3, 1), D('118.56'), D('132.06'), D('118.5'), D('130.31'), 1);"
        "p = intraday_path(b);"
        "assert 'django' not in sys.modules, 'feed must not import django';"
        "print(hashlib.sha256(','.join(map(str, p)).encode()).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "befa790033159ca8ba4f6fada948eefae184a6cd6009c3ddd32a6d9acb3c9c2a"


# --- replay clock -----------------------------------------------------------------------------------------


def test_default_speed_is_one_day_per_ten_minutes() -> None:
    src = HistoricalReplaySource({"X": series("X", 3)}, T0)
    assert DEFAULT_SPEED == 39
    assert src.speed == 39
    assert src.day_duration == timedelta(minutes=10)
    alt = HistoricalReplaySource.with_day_duration({"X": series("X", 3)}, T0, timedelta(minutes=10))
    assert alt.speed == 39


@pytest.mark.parametrize(
    ("speed", "expected"),
    [
        pytest.param(1, Fraction(1), id="int-realtime"),
        pytest.param(0.1, Fraction(1, 10), id="float-via-repr"),
        pytest.param(Decimal("2.5"), Fraction(5, 2), id="decimal"),
    ],
)
def test_speed_types(speed: int | float | Decimal, expected: Fraction) -> None:
    assert HistoricalReplaySource({"X": series("X", 1)}, T0, speed).speed == expected


@pytest.mark.parametrize(
    "speed",
    [pytest.param(0, id="zero"), pytest.param(-1, id="negative"), pytest.param(Decimal("NaN"), id="nan")],
)
def test_invalid_speed(speed: int | Decimal) -> None:
    with pytest.raises(ValueError, match="speed"):
        HistoricalReplaySource({"X": series("X", 1)}, T0, speed)


def test_rejects_naive_datetimes_and_unknown_symbols() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        HistoricalReplaySource({"X": series("X", 1)}, datetime(2024, 1, 1))
    src = HistoricalReplaySource({"X": series("X", 1)}, T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        src.price_at("X", datetime(2024, 1, 1))
    with pytest.raises(UnknownSymbolError):
        src.price_at("Y", T0)
    with pytest.raises(UnknownSymbolError):
        src.ticks("Y", T0, T0 + timedelta(minutes=1))


def test_rejects_unsorted_bars() -> None:
    bars = series("X", 2)
    with pytest.raises(ValueError, match="increasing"):
        HistoricalReplaySource({"X": bars[::-1]}, T0)


def test_is_a_price_source() -> None:
    src = HistoricalReplaySource({"B": series("B", 1), "A": series("A", 1)}, T0)
    assert isinstance(src, PriceSource)
    assert src.symbols() == ["A", "B"]


def test_mapping_day_and_point() -> None:
    bars = series("X", 3)
    src = HistoricalReplaySource({"X": bars}, T0)  # 10 min per day, 600/390 s per point
    assert src.price_at("X", T0) == bars[0].open
    last = src.position("X", T0 + timedelta(minutes=10) - timedelta(microseconds=1))
    assert (last.bar, last.point, last.price) == (bars[0], DEFAULT_POINTS - 1, bars[0].close)
    nxt = src.position("X", T0 + timedelta(minutes=10))
    assert (nxt.bar, nxt.point, nxt.price, nxt.cycle) == (bars[1], 0, bars[1].open, 0)
    mid = src.position("X", T0 + timedelta(minutes=25))
    assert (mid.bar, mid.point) == (bars[2], 195)
    assert mid.simulated_at == datetime(2001, 1, 3, 12, 45, tzinfo=mid.simulated_at.tzinfo)
    assert mid.price == intraday_path(bars[2])[195]


def test_mapping_wraps_and_counts_cycles() -> None:
    bars = series("X", 3)
    src = HistoricalReplaySource({"X": bars}, T0)
    cycle = timedelta(minutes=30)
    for offset in (timedelta(0), timedelta(minutes=7, seconds=3), timedelta(minutes=29, seconds=59)):
        here = src.position("X", T0 + offset)
        later = src.position("X", T0 + offset + 5 * cycle)
        assert (later.bar, later.point, later.price) == (here.bar, here.point, here.price)
        assert later.cycle == here.cycle + 5
    before = src.position("X", T0 - timedelta(microseconds=1))
    assert (before.bar, before.point, before.cycle) == (bars[2], DEFAULT_POINTS - 1, -1)


def test_history_start_selects_first_day_and_shorter_series_wrap_alone() -> None:
    long, short = series("L", 10), series("S", 2, first=date(2001, 1, 5))
    src = HistoricalReplaySource({"L": long, "S": short}, T0, history_start=date(2001, 1, 5))
    assert src.position("L", T0).bar == long[4]
    assert src.position("S", T0).bar == short[0]
    two_days = T0 + timedelta(minutes=20)
    assert (src.position("L", two_days).bar, src.position("S", two_days).bar) == (long[6], short[0])
    assert src.position("S", two_days).cycle == 1
    # A start after the data ends wraps to the first bar.
    late = HistoricalReplaySource({"L": long}, T0, history_start=date(2030, 1, 1))
    assert late.position("L", T0).bar == long[0]


def test_mapping_is_monotone(real_bars: dict[str, list[DailyBar]]) -> None:
    src = HistoricalReplaySource(real_bars, T0, history_start=date(2012, 1, 1))
    n = len(real_bars["FB"])
    rng = random.Random(3)
    instants = sorted(T0 + timedelta(microseconds=rng.randrange(-(10**12), 10**13)) for _ in range(2000))
    slots = []
    for ts in instants:
        pos = src.position("FB", ts)
        day_index = real_bars["FB"].index(pos.bar)
        slots.append((pos.cycle * n + day_index) * DEFAULT_POINTS + pos.point)
    assert slots == sorted(slots)
    assert slots[0] < 0 < slots[-1]


def test_two_instances_agree(real_bars: dict[str, list[DailyBar]]) -> None:
    a = HistoricalReplaySource(real_bars, T0, 60, history_start=date(2008, 9, 1))
    intraday_path.cache_clear()
    b = HistoricalReplaySource(
        {s: list(v) for s, v in real_bars.items()}, T0, 60, history_start=date(2008, 9, 1)
    )
    rng = random.Random(11)
    for _ in range(300):
        ts = T0 + timedelta(microseconds=rng.randrange(10**11))
        symbol = rng.choice(a.symbols())
        assert a.price_at(symbol, ts) == b.price_at(symbol, ts)


def test_ticks_cover_a_day_with_exact_boundaries() -> None:
    bars = series("X", 3)
    src = HistoricalReplaySource({"X": bars}, T0)
    start = T0 + timedelta(seconds=1)  # mid-slot: the first tick is stamped at start
    ticks = list(src.ticks("X", start, T0 + timedelta(minutes=10)))
    assert len(ticks) == DEFAULT_POINTS
    assert ticks[0] == (start, bars[0].open)
    assert [p for _, p in ticks] == list(intraday_path(bars[0]))
    times = [t for t, _ in ticks]
    assert times == sorted(set(times))
    for ts, price in ticks[1:]:
        assert src.price_at("X", ts) == price
        # ts is the first microsecond of its slot.
        assert src.position("X", ts - timedelta(microseconds=1)).point == src.position("X", ts).point - 1
    across = list(
        src.ticks(
            "X", T0 + timedelta(minutes=10) - timedelta(seconds=1), T0 + timedelta(minutes=10, seconds=1)
        )
    )
    assert [p for _, p in across] == [bars[0].close, bars[1].open]
    assert list(src.ticks("X", T0, T0)) == []
