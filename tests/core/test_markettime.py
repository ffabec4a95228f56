"""Tests for apps.core.markettime. Every expected date and instant below was checked by hand.

Reference facts used: 2026-11-26 is Thanksgiving (4th Thursday); 2026-01-19 is Martin Luther King Day
(3rd Monday); 2026-12-25 is a Friday; US DST starts 2026-03-08 and ends 2026-11-01 (both Sundays);
New York is UTC-5 in winter (EST) and UTC-4 in summer (EDT).
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

# `-p no:django` skips pytest-django, which is what normally puts the project root on sys.path.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from apps.core import markettime as mt  # noqa: E402
from apps.core.markettime import (  # noqa: E402
    NEW_YORK,
    SUPPORTED_END,
    SUPPORTED_START,
    AlwaysOpenCalendar,
    CalendarRangeError,
    Clock,
    FixedClock,
    MarketCalendar,
    OffsetClock,
    Phase,
    Session,
    SystemClock,
    XNYSCalendar,
    alpaca_calendar,
    alpaca_clock,
)

XNYS = XNYSCalendar()
DEMO = AlwaysOpenCalendar()


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, us, tzinfo=UTC)


def et(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    """A New York wall-clock instant (converted to UTC by the code under test)."""
    return datetime(y, mo, d, h, mi, s, us, tzinfo=NEW_YORK)


# ------------------------------------------------------------------------------------------ clocks


def test_system_clock_is_aware_utc_now() -> None:
    before = datetime.now(UTC)
    now = SystemClock().now()
    after = datetime.now(UTC)
    assert now.tzinfo is UTC
    assert before <= now <= after


def test_fixed_clock_set_and_advance() -> None:
    clock = FixedClock(utc(2026, 11, 25, 15, 0))
    assert clock.now() == utc(2026, 11, 25, 15, 0)
    assert clock.now() == clock.now()  # stands still
    assert clock.advance(timedelta(minutes=90)) == utc(2026, 11, 25, 16, 30)
    assert clock.now() == utc(2026, 11, 25, 16, 30)
    clock.set(et(2026, 11, 27, 9, 30))  # any aware zone in, UTC out
    assert clock.now() == utc(2026, 11, 27, 14, 30)
    assert clock.now().tzinfo is UTC


def test_fixed_clock_rejects_naive() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FixedClock(datetime(2026, 1, 1))
    clock = FixedClock(utc(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.set(datetime(2026, 1, 2))
    assert clock.now() == utc(2026, 1, 1)  # unchanged after the rejected set


def test_offset_clock_follows_its_base() -> None:
    base = FixedClock(utc(2026, 1, 1, 12))
    clock = OffsetClock(timedelta(hours=-3), base)
    assert clock.now() == utc(2026, 1, 1, 9)
    base.advance(timedelta(minutes=5))
    assert clock.now() == utc(2026, 1, 1, 9, 5)


def test_offset_clock_starting_at() -> None:
    base = FixedClock(utc(2026, 1, 1, 12))
    clock = OffsetClock.starting_at(utc(2026, 11, 27, 17, 59), base)
    assert clock.offset == utc(2026, 11, 27, 17, 59) - utc(2026, 1, 1, 12)
    assert clock.now() == utc(2026, 11, 27, 17, 59)
    base.advance(timedelta(minutes=1))
    assert clock.now() == utc(2026, 11, 27, 18, 0)


def test_offset_clock_defaults_to_system_clock() -> None:
    clock = OffsetClock(timedelta(days=1))
    delta = clock.now() - datetime.now(UTC)
    assert timedelta(hours=23) < delta <= timedelta(days=1)


@pytest.mark.parametrize(
    "clock",
    [
        pytest.param(SystemClock(), id="system"),
        pytest.param(FixedClock(utc(2026, 1, 1)), id="fixed"),
        pytest.param(OffsetClock(timedelta(0)), id="offset"),
    ],
)
def test_clocks_satisfy_protocol(clock: Clock) -> None:
    assert isinstance(clock, Clock)


@pytest.mark.parametrize("calendar", [pytest.param(XNYS, id="xnys"), pytest.param(DEMO, id="always-open")])
def test_calendars_satisfy_protocol(calendar: MarketCalendar) -> None:
    assert isinstance(calendar, MarketCalendar)


# -------------------------------------------------------------------------------- module hygiene


def test_import_is_django_free_and_lazy() -> None:
    """Importing the module must not import Django, nor pay for exchange_calendars/pandas."""
    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys, apps.core.markettime as m; "
        "bad = [n for n in ('django', 'exchange_calendars', 'pandas') if n in sys.modules]; "
        "assert not bad, bad; "
        "m.XNYSCalendar(); m.AlwaysOpenCalendar(); "
        "assert 'exchange_calendars' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_schedule_is_built_once_and_shared() -> None:
    assert mt._load_schedule() is mt._load_schedule()
    assert XNYSCalendar().preload() == XNYS.preload()
    assert XNYS.preload() >= 0.0


def test_supported_range() -> None:
    assert date(2000, 1, 1) == SUPPORTED_START
    assert date(2030, 12, 31) == SUPPORTED_END
    sched = mt._load_schedule()
    assert sched.dates[0] == date(2000, 1, 3)  # 2000-01-01 was a Saturday
    assert sched.dates[-1] == date(2030, 12, 31)  # a Tuesday


# ----------------------------------------------------------------------------------- trading days


@pytest.mark.parametrize(
    ("d", "expected"),
    [
        pytest.param(date(2026, 11, 25), True, id="wed-before-thanksgiving"),
        pytest.param(date(2026, 11, 26), False, id="thanksgiving"),
        pytest.param(date(2026, 11, 27), True, id="black-friday-early-close"),
        pytest.param(date(2026, 11, 28), False, id="saturday"),
        pytest.param(date(2026, 11, 29), False, id="sunday"),
        pytest.param(date(2026, 12, 24), True, id="christmas-eve-early-close"),
        pytest.param(date(2026, 12, 25), False, id="christmas"),
        pytest.param(date(2026, 1, 19), False, id="mlk-day"),
        pytest.param(date(2026, 6, 19), False, id="juneteenth"),
        pytest.param(date(2026, 7, 3), False, id="independence-day-observed"),
        pytest.param(date(2026, 4, 3), False, id="good-friday"),
        pytest.param(date(2001, 9, 10), True, id="2001-09-10"),
        pytest.param(date(2001, 9, 11), False, id="2001-09-11"),
        pytest.param(date(2001, 9, 12), False, id="2001-09-12"),
        pytest.param(date(2001, 9, 13), False, id="2001-09-13"),
        pytest.param(date(2001, 9, 14), False, id="2001-09-14"),
        pytest.param(date(2001, 9, 17), True, id="2001-09-17-reopening"),
        pytest.param(date(2012, 10, 29), False, id="hurricane-sandy"),
        pytest.param(date(2025, 1, 9), False, id="carter-mourning"),
    ],
)
def test_is_trading_day(d: date, expected: bool) -> None:
    assert XNYS.is_trading_day(d) is expected
    assert (XNYS.session(d) is not None) is expected


def test_thanksgiving_week_sessions() -> None:
    sessions = XNYS.sessions_between(date(2026, 11, 23), date(2026, 11, 29))
    assert [s.date for s in sessions] == [
        date(2026, 11, 23),
        date(2026, 11, 24),
        date(2026, 11, 25),
        date(2026, 11, 27),
    ]
    assert [s.early_close for s in sessions] == [False, False, False, True]


def test_sessions_between_empty_and_single() -> None:
    assert XNYS.sessions_between(date(2026, 11, 28), date(2026, 11, 29)) == []
    assert XNYS.sessions_between(date(2026, 11, 30), date(2026, 11, 23)) == []
    assert [s.date for s in XNYS.sessions_between(date(2026, 11, 27), date(2026, 11, 27))] == [
        date(2026, 11, 27)
    ]


def test_2026_session_count_and_early_closes() -> None:
    # 261 weekdays minus 10 weekday holidays (Jan 1, Jan 19, Feb 16, Apr 3, May 25, Jun 19, Jul 3, Sep 7,
    # Nov 26, Dec 25); July 2 is not an early close when July 3 is the observed holiday.
    sessions = XNYS.sessions_between(date(2026, 1, 1), date(2026, 12, 31))
    assert len(sessions) == 251
    assert [s.date for s in sessions if s.early_close] == [date(2026, 11, 27), date(2026, 12, 24)]


def test_regular_session_instants() -> None:
    # 2026-11-25 is in EST (UTC-5).
    assert XNYS.session(date(2026, 11, 25)) == Session(
        date=date(2026, 11, 25),
        pre_open=utc(2026, 11, 25, 9, 0),
        open=utc(2026, 11, 25, 14, 30),
        close=utc(2026, 11, 25, 21, 0),
        post_close=utc(2026, 11, 26, 1, 0),
        early_close=False,
    )


def test_early_close_session_instants() -> None:
    # Black Friday 2026: close 13:00 ET = 18:00 UTC, post-market until 17:00 ET = 22:00 UTC.
    session = XNYS.session(date(2026, 11, 27))
    assert session == Session(
        date=date(2026, 11, 27),
        pre_open=utc(2026, 11, 27, 9, 0),
        open=utc(2026, 11, 27, 14, 30),
        close=utc(2026, 11, 27, 18, 0),
        post_close=utc(2026, 11, 27, 22, 0),
        early_close=True,
    )
    assert session.close == et(2026, 11, 27, 13, 0)
    assert session.close.tzinfo is UTC


def test_every_session_is_well_formed() -> None:
    sessions = XNYS.sessions_between(SUPPORTED_START, SUPPORTED_END)
    assert len(sessions) == len(mt._load_schedule().dates)
    for s in sessions:
        assert s.pre_open < s.open < s.close <= s.post_close
        assert s.pre_open.astimezone(NEW_YORK).timetz().replace(tzinfo=None).isoformat() == "04:00:00"
        assert s.open.astimezone(NEW_YORK).strftime("%H:%M") == "09:30"
        close = s.close.astimezone(NEW_YORK).strftime("%H:%M")
        assert close == ("13:00" if s.early_close else "16:00")
        assert s.post_close - s.close == timedelta(hours=4)
        assert XNYS.trade_date(s.pre_open) == XNYS.trade_date(s.post_close - timedelta(microseconds=1))
        assert XNYS.trade_date(s.open) == s.date
        assert s.date.weekday() < 5


# ------------------------------------------------------------------------------------------- DST


@pytest.mark.parametrize(
    ("d", "open_utc", "close_utc"),
    [
        pytest.param(
            date(2026, 3, 6), utc(2026, 3, 6, 14, 30), utc(2026, 3, 6, 21, 0), id="fri-before-spring"
        ),
        pytest.param(
            date(2026, 3, 9), utc(2026, 3, 9, 13, 30), utc(2026, 3, 9, 20, 0), id="mon-after-spring"
        ),
        pytest.param(
            date(2026, 10, 30), utc(2026, 10, 30, 13, 30), utc(2026, 10, 30, 20, 0), id="fri-before-fall"
        ),
        pytest.param(
            date(2026, 11, 2), utc(2026, 11, 2, 14, 30), utc(2026, 11, 2, 21, 0), id="mon-after-fall"
        ),
    ],
)
def test_dst_open_and_close(d: date, open_utc: datetime, close_utc: datetime) -> None:
    session = XNYS.session(d)
    assert session is not None
    assert (session.open, session.close) == (open_utc, close_utc)


def test_dst_sundays_are_not_sessions() -> None:
    assert XNYS.session(date(2026, 3, 8)) is None
    assert XNYS.session(date(2026, 11, 1)) is None


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        pytest.param(utc(2026, 3, 9, 3, 30), date(2026, 3, 8), id="spring-23:30-EDT-previous-day"),
        pytest.param(utc(2026, 3, 9, 4, 0), date(2026, 3, 9), id="spring-midnight-EDT"),
        pytest.param(utc(2026, 3, 8, 4, 59), date(2026, 3, 7), id="before-spring-23:59-EST"),
        pytest.param(utc(2026, 11, 1, 3, 59), date(2026, 10, 31), id="fall-23:59-EDT"),
        pytest.param(utc(2026, 11, 1, 5, 30), date(2026, 11, 1), id="fall-repeated-01:30"),
        pytest.param(utc(2026, 11, 3, 4, 59), date(2026, 11, 2), id="after-fall-23:59-EST"),
        pytest.param(utc(2026, 11, 3, 5, 0), date(2026, 11, 3), id="after-fall-midnight-EST"),
    ],
)
def test_trade_date_is_new_york_date(ts: datetime, expected: date) -> None:
    assert XNYS.trade_date(ts) == expected


def test_trade_date_accepts_any_zone() -> None:
    tokyo = timezone(timedelta(hours=9))
    # 2026-03-09 12:30 +09:00 == 03:30 UTC == 23:30 EDT on the 8th.
    assert XNYS.trade_date(datetime(2026, 3, 9, 12, 30, tzinfo=tokyo)) == date(2026, 3, 8)


# ----------------------------------------------------------------------------------------- phases


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        pytest.param(et(2026, 11, 25, 3, 59, 59), Phase.CLOSED, id="03:59:59-closed"),
        pytest.param(et(2026, 11, 25, 4, 0), Phase.PRE_MARKET, id="04:00-pre"),
        pytest.param(et(2026, 11, 25, 9, 29, 59, 999999), Phase.PRE_MARKET, id="09:29:59.999999-pre"),
        pytest.param(et(2026, 11, 25, 9, 30), Phase.REGULAR, id="09:30:00-regular"),
        pytest.param(et(2026, 11, 25, 15, 59, 59, 999999), Phase.REGULAR, id="15:59:59.999999-regular"),
        pytest.param(et(2026, 11, 25, 16, 0), Phase.POST_MARKET, id="16:00:00-post"),
        pytest.param(et(2026, 11, 25, 19, 59, 59), Phase.POST_MARKET, id="19:59:59-post"),
        pytest.param(et(2026, 11, 25, 20, 0), Phase.CLOSED, id="20:00-closed"),
        pytest.param(et(2026, 11, 26, 11, 0), Phase.CLOSED, id="thanksgiving-closed"),
        pytest.param(et(2026, 11, 27, 12, 59, 59), Phase.REGULAR, id="early-close-12:59:59-regular"),
        pytest.param(et(2026, 11, 27, 13, 0), Phase.POST_MARKET, id="early-close-13:00-post"),
        pytest.param(et(2026, 11, 27, 16, 59, 59), Phase.POST_MARKET, id="early-close-16:59:59-post"),
        pytest.param(et(2026, 11, 27, 17, 0), Phase.CLOSED, id="early-close-17:00-closed"),
        pytest.param(et(2026, 11, 28, 11, 0), Phase.CLOSED, id="saturday-closed"),
        pytest.param(et(2026, 12, 25, 11, 0), Phase.CLOSED, id="christmas-closed"),
        pytest.param(utc(2026, 3, 9, 13, 30), Phase.REGULAR, id="summer-open-13:30Z"),
        pytest.param(utc(2026, 3, 9, 13, 29, 59), Phase.PRE_MARKET, id="summer-13:29:59Z-pre"),
        pytest.param(utc(2026, 3, 6, 14, 29, 59), Phase.PRE_MARKET, id="winter-14:29:59Z-pre"),
        pytest.param(utc(2026, 3, 6, 14, 30), Phase.REGULAR, id="winter-open-14:30Z"),
    ],
)
def test_phase_at_boundaries(ts: datetime, expected: Phase) -> None:
    assert XNYS.phase(ts) is expected
    assert XNYS.is_open(ts) is (expected is Phase.REGULAR)


def test_phase_values_follow_alpaca_vocabulary() -> None:
    assert [p.value for p in Phase] == ["pre", "core", "post", "closed"]


# ------------------------------------------------------------------------------ next / previous


@pytest.mark.parametrize(
    ("ts", "next_open", "next_close"),
    [
        pytest.param(
            utc(2026, 11, 25, 14, 29, 59), utc(2026, 11, 25, 14, 30), utc(2026, 11, 25, 21, 0), id="pre"
        ),
        pytest.param(
            utc(2026, 11, 25, 14, 30), utc(2026, 11, 27, 14, 30), utc(2026, 11, 25, 21, 0), id="at-open"
        ),
        pytest.param(
            utc(2026, 11, 25, 21, 0), utc(2026, 11, 27, 14, 30), utc(2026, 11, 27, 18, 0), id="at-close"
        ),
        pytest.param(
            utc(2026, 11, 26, 15, 0), utc(2026, 11, 27, 14, 30), utc(2026, 11, 27, 18, 0), id="holiday"
        ),
        pytest.param(
            utc(2026, 11, 27, 18, 0), utc(2026, 11, 30, 14, 30), utc(2026, 11, 30, 21, 0), id="weekend"
        ),
        pytest.param(
            utc(2026, 3, 6, 22, 0), utc(2026, 3, 9, 13, 30), utc(2026, 3, 9, 20, 0), id="across-dst"
        ),
    ],
)
def test_next_open_and_close(ts: datetime, next_open: datetime, next_close: datetime) -> None:
    assert XNYS.next_open(ts) == next_open
    assert XNYS.next_close(ts) == next_close
    assert XNYS.next_open(ts).tzinfo is UTC


def test_next_and_previous_session() -> None:
    nxt = XNYS.next_session(utc(2026, 11, 25, 15, 0))
    assert nxt.date == date(2026, 11, 27)
    assert XNYS.next_session(utc(2026, 11, 25, 14, 29)).date == date(2026, 11, 25)
    # The Friday session has closed only at 18:00 UTC (13:00 ET), inclusive.
    assert XNYS.previous_session(utc(2026, 11, 27, 17, 59)).date == date(2026, 11, 25)
    assert XNYS.previous_session(utc(2026, 11, 27, 18, 0)).date == date(2026, 11, 27)
    assert XNYS.previous_session(utc(2026, 11, 29, 12, 0)).date == date(2026, 11, 27)


def test_next_and_previous_trading_date() -> None:
    assert XNYS.next_trading_date(date(2026, 11, 25)) == date(2026, 11, 27)
    assert XNYS.next_trading_date(date(2026, 11, 28)) == date(2026, 11, 30)
    assert XNYS.previous_trading_date(date(2026, 11, 27)) == date(2026, 11, 25)
    assert XNYS.previous_trading_date(date(2026, 11, 30)) == date(2026, 11, 27)
    assert XNYS.previous_trading_date(date(2001, 9, 17)) == date(2001, 9, 10)


# ------------------------------------------------------------------------------------- settlement


@pytest.mark.parametrize(
    ("trade_date", "days", "expected"),
    [
        pytest.param(date(2026, 11, 25), 1, date(2026, 11, 27), id="wed-before-thanksgiving"),
        pytest.param(date(2026, 11, 27), 1, date(2026, 11, 30), id="early-close-friday-to-monday"),
        pytest.param(date(2026, 11, 20), 1, date(2026, 11, 23), id="friday-to-monday"),
        pytest.param(date(2026, 1, 16), 1, date(2026, 1, 20), id="friday-across-mlk-monday"),
        pytest.param(date(2026, 11, 24), 2, date(2026, 11, 27), id="t+2-across-thanksgiving"),
        pytest.param(date(2026, 11, 25), 2, date(2026, 11, 30), id="t+2-across-holiday-and-weekend"),
        pytest.param(date(2026, 12, 23), 1, date(2026, 12, 24), id="into-early-close-day"),
        pytest.param(date(2026, 12, 24), 1, date(2026, 12, 28), id="across-christmas-weekend"),
        pytest.param(date(2001, 9, 10), 1, date(2001, 9, 17), id="across-2001-09-11-closure"),
        pytest.param(date(2026, 11, 28), 1, date(2026, 11, 30), id="saturday-counts-from-monday"),
        pytest.param(date(2026, 11, 26), 1, date(2026, 11, 27), id="holiday-counts-from-next"),
        pytest.param(date(2030, 12, 30), 1, date(2030, 12, 31), id="last-supported"),
    ],
)
def test_settlement_date(trade_date: date, days: int, expected: date) -> None:
    assert XNYS.settlement_date(trade_date, days) == expected


def test_settlement_days_must_be_positive() -> None:
    with pytest.raises(ValueError, match="days must be >= 1"):
        XNYS.settlement_date(date(2026, 11, 25), 0)


# -------------------------------------------------------------------------------- range and input


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: XNYS.is_trading_day(date(1999, 12, 31)), id="is_trading_day-before"),
        pytest.param(lambda: XNYS.session(date(2031, 1, 2)), id="session-after"),
        pytest.param(lambda: XNYS.sessions_between(date(1999, 12, 1), date(2000, 1, 10)), id="between"),
        pytest.param(lambda: XNYS.phase(utc(2031, 1, 2, 15)), id="phase-after"),
        pytest.param(lambda: XNYS.phase(utc(1999, 12, 31, 15)), id="phase-before"),
        pytest.param(lambda: XNYS.next_open(utc(2030, 12, 31, 15)), id="next_open-past-end"),
        pytest.param(lambda: XNYS.next_close(utc(2030, 12, 31, 22)), id="next_close-past-end"),
        pytest.param(lambda: XNYS.next_session(utc(2030, 12, 31, 15)), id="next_session-past-end"),
        pytest.param(lambda: XNYS.previous_session(utc(2000, 1, 3, 20)), id="previous_session-before"),
        pytest.param(lambda: XNYS.settlement_date(date(2030, 12, 31)), id="settlement-past-end"),
        pytest.param(lambda: XNYS.settlement_date(date(1999, 12, 31)), id="settlement-before"),
        pytest.param(lambda: DEMO.session(date(2031, 1, 1)), id="demo-session-after"),
        pytest.param(lambda: DEMO.phase(utc(1999, 12, 31, 23)), id="demo-phase-before"),
        pytest.param(lambda: DEMO.settlement_date(date(2030, 12, 31)), id="demo-settlement-past-end"),
    ],
)
def test_outside_supported_range_raises(call: object) -> None:
    assert callable(call)
    with pytest.raises(CalendarRangeError, match=r"supported"):
        call()


def test_range_error_message_names_the_range() -> None:
    with pytest.raises(CalendarRangeError) as exc:
        XNYS.session(date(2031, 1, 2))
    assert str(exc.value) == (
        "2031-01-02 is outside the supported market calendar range 2000-01-01..2030-12-31"
    )
    assert isinstance(exc.value, ValueError)


def test_naive_datetimes_are_rejected() -> None:
    naive = datetime(2026, 11, 25, 15)
    for call in (XNYS.phase, XNYS.is_open, XNYS.next_open, XNYS.next_close, XNYS.trade_date, DEMO.phase):
        with pytest.raises(ValueError, match="timezone-aware"):
            call(naive)


def test_datetime_is_not_a_session_date() -> None:
    with pytest.raises(TypeError, match=r"datetime\.date"):
        XNYS.is_trading_day(utc(2026, 11, 25))


# ------------------------------------------------------------------------------------- always open


def test_always_open_every_day_whole_utc_sessions() -> None:
    saturday = DEMO.session(date(2026, 11, 28))
    assert saturday == Session(
        date=date(2026, 11, 28),
        pre_open=utc(2026, 11, 28),
        open=utc(2026, 11, 28),
        close=utc(2026, 11, 29),
        post_close=utc(2026, 11, 29),
        early_close=False,
    )
    assert DEMO.is_trading_day(date(2026, 11, 26))
    assert DEMO.is_trading_day(date(2026, 12, 25))
    assert len(DEMO.sessions_between(date(2026, 11, 23), date(2026, 11, 29))) == 7


@pytest.mark.parametrize(
    "ts",
    [
        pytest.param(utc(2026, 11, 28, 3, 0), id="saturday-night"),
        pytest.param(utc(2026, 11, 26, 15, 0), id="thanksgiving"),
        pytest.param(utc(2026, 11, 27, 0, 0), id="midnight"),
        pytest.param(utc(2026, 11, 27, 23, 59, 59, 999999), id="last-microsecond"),
    ],
)
def test_always_open_phase_regular(ts: datetime) -> None:
    assert DEMO.phase(ts) is Phase.REGULAR
    assert DEMO.is_open(ts)


def test_always_open_next_and_previous() -> None:
    ts = utc(2026, 11, 27, 15, 0)
    assert DEMO.next_open(ts) == utc(2026, 11, 28)
    assert DEMO.next_close(ts) == utc(2026, 11, 28)
    assert DEMO.next_open(utc(2026, 11, 28)) == utc(2026, 11, 29)  # strictly after
    assert DEMO.next_session(ts).date == date(2026, 11, 28)
    assert DEMO.previous_session(ts).date == date(2026, 11, 26)
    assert DEMO.previous_session(utc(2026, 11, 28)).date == date(2026, 11, 27)  # closed at that instant


def test_always_open_trade_date_is_utc_date() -> None:
    # 02:00 UTC Tuesday is Monday evening in New York, but the demo session is the UTC day.
    ts = utc(2026, 12, 1, 2, 0)
    assert DEMO.trade_date(ts) == date(2026, 12, 1)
    session = DEMO.session(DEMO.trade_date(ts))
    assert session is not None
    assert session.open <= ts < session.close


@pytest.mark.parametrize(
    ("trade_date", "expected"),
    [
        pytest.param(date(2026, 11, 25), date(2026, 11, 27), id="wed-before-thanksgiving"),
        pytest.param(date(2026, 11, 26), date(2026, 11, 27), id="thanksgiving-trade"),
        pytest.param(date(2026, 11, 28), date(2026, 11, 30), id="saturday-trade"),
        pytest.param(date(2026, 11, 29), date(2026, 11, 30), id="sunday-trade"),
        pytest.param(date(2026, 1, 17), date(2026, 1, 20), id="saturday-before-mlk"),
    ],
)
def test_always_open_settles_on_xnys_business_days(trade_date: date, expected: date) -> None:
    assert DEMO.settlement_date(trade_date) == expected


# ---------------------------------------------------------------------------------- Alpaca shapes

LEGACY_CLOCK_FIELDS = {"timestamp", "is_open", "next_open", "next_close"}
LEGACY_CALENDAR_FIELDS = {"date", "open", "close", "session_open", "session_close", "settlement_date"}


def test_alpaca_clock_matches_openapi_example() -> None:
    # The legacy_clock example in Alpaca's OpenAPI spec, reproduced from its own timestamp.
    body = alpaca_clock(XNYS, utc(2025, 6, 24, 18, 15, 22))
    assert body == {
        "is_open": True,
        "next_close": "2025-06-24T16:00:00-04:00",
        "next_open": "2025-06-25T09:30:00-04:00",
        "timestamp": "2025-06-24T14:15:22-04:00",
    }
    assert set(body) == LEGACY_CLOCK_FIELDS


def test_alpaca_clock_closed_on_holiday_in_winter() -> None:
    assert alpaca_clock(XNYS, utc(2026, 11, 26, 15, 0, 0, 123456)) == {
        "timestamp": "2026-11-26T10:00:00.123456-05:00",
        "is_open": False,
        "next_open": "2026-11-27T09:30:00-05:00",
        "next_close": "2026-11-27T13:00:00-05:00",
    }


def test_alpaca_clock_always_open() -> None:
    assert alpaca_clock(DEMO, utc(2026, 11, 28, 3, 0)) == {
        "timestamp": "2026-11-27T22:00:00-05:00",
        "is_open": True,
        "next_open": "2026-11-28T19:00:00-05:00",
        "next_close": "2026-11-28T19:00:00-05:00",
    }


def test_alpaca_calendar_thanksgiving_week() -> None:
    rows = alpaca_calendar(XNYS, date(2026, 11, 25), date(2026, 11, 30))
    assert rows == [
        {
            "date": "2026-11-25",
            "open": "09:30",
            "close": "16:00",
            "session_open": "0400",
            "session_close": "2000",
            "settlement_date": "2026-11-27",
        },
        {
            "date": "2026-11-27",
            "open": "09:30",
            "close": "13:00",
            "session_open": "0400",
            "session_close": "1700",
            "settlement_date": "2026-11-30",
        },
        {
            "date": "2026-11-30",
            "open": "09:30",
            "close": "16:00",
            "session_open": "0400",
            "session_close": "2000",
            "settlement_date": "2026-12-01",
        },
    ]
    assert all(set(row) == LEGACY_CALENDAR_FIELDS for row in rows)


def test_alpaca_calendar_matches_openapi_example_in_summer() -> None:
    # legacy_calendar_day example: 2025-01-02, 09:30-16:00, 0400-2000, settles 2025-01-03. Also check
    # that a summer (EDT) day still renders New York wall-clock times.
    rows = alpaca_calendar(XNYS, date(2025, 1, 2), date(2025, 1, 2)) + alpaca_calendar(
        XNYS, date(2026, 7, 1), date(2026, 7, 1)
    )
    assert rows == [
        {
            "date": "2025-01-02",
            "open": "09:30",
            "close": "16:00",
            "session_open": "0400",
            "session_close": "2000",
            "settlement_date": "2025-01-03",
        },
        {
            "date": "2026-07-01",
            "open": "09:30",
            "close": "16:00",
            "session_open": "0400",
            "session_close": "2000",
            "settlement_date": "2026-07-02",
        },
    ]


def test_alpaca_calendar_always_open() -> None:
    rows = alpaca_calendar(DEMO, date(2026, 11, 28), date(2026, 11, 28))
    assert rows == [
        {
            "date": "2026-11-28",
            "open": "00:00",
            "close": "23:59",
            "session_open": "0000",
            "session_close": "2359",
            "settlement_date": "2026-11-30",
        }
    ]
    # alpaca-py parses these with strptime("%Y-%m-%d %H:%M"); "24:00" would not parse.
    datetime.strptime(f"{rows[0]['date']} {rows[0]['close']}", "%Y-%m-%d %H:%M")  # noqa: DTZ007


# ------------------------------------------------------------------------------------- properties

_instants = st.datetimes(
    min_value=datetime(2000, 1, 3), max_value=datetime(2030, 12, 30), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(ts=_instants)
def test_phase_agrees_with_sessions(ts: datetime) -> None:
    phase = XNYS.phase(ts)
    session = XNYS.session(XNYS.trade_date(ts))
    assert XNYS.is_open(ts) is (phase is Phase.REGULAR)
    if session is None:
        assert phase is Phase.CLOSED
    else:
        assert phase is session.phase_at(ts)
    nxt_open, nxt_close = XNYS.next_open(ts), XNYS.next_close(ts)
    assert nxt_open > ts
    assert nxt_close > ts
    # Open now iff the next close comes before the next open.
    assert (phase is Phase.REGULAR) is (nxt_close < nxt_open)
    assert XNYS.phase(nxt_open) is Phase.REGULAR
    assert XNYS.phase(nxt_close) is Phase.POST_MARKET
    assert XNYS.phase(nxt_open - timedelta(microseconds=1)) is Phase.PRE_MARKET


@settings(max_examples=200, deadline=None)
@given(d=st.dates(min_value=date(2000, 1, 1), max_value=date(2030, 12, 20)))
def test_settlement_is_next_business_day(d: date) -> None:
    settled = XNYS.settlement_date(d)
    assert settled > d
    assert XNYS.is_trading_day(settled)
    between = [d + timedelta(days=k) for k in range(1, (settled - d).days)]
    assert not any(XNYS.is_trading_day(x) for x in between)
    assert XNYS.settlement_date(d, 2) == XNYS.settlement_date(settled, 1)
