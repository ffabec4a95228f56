"""Trading calendar, clocks and sessions: the one place that knows what time it is on the market.

Pure Python, no Django: settings wire a ``Clock`` and a ``MarketCalendar`` into the services that need them.

Invariants:

- Every datetime accepted must be timezone-aware (a naive one raises ``ValueError``); every datetime
  returned is in UTC (``tzinfo is datetime.UTC``). Formatting in America/New_York happens only in the
  ``alpaca_*`` shape builders.
- XNYS trade dates are America/New_York calendar dates (``zoneinfo``), so DST is handled by the zone
  database: 09:30 ET is 14:30 UTC in winter and 13:30 UTC in summer.
- Phases are half-open intervals of one session: ``[pre_open, open)`` is PRE_MARKET, ``[open, close)``
  REGULAR, ``[close, post_close)`` POST_MARKET, anything else CLOSED. So exactly 09:30:00 ET is REGULAR and
  exactly 16:00:00 ET is POST_MARKET.
- The supported range is ``SUPPORTED_START`` .. ``SUPPORTED_END`` (session dates). A query that needs a
  date outside it raises ``CalendarRangeError``; nothing is extrapolated. Holidays and early closes come
  from ``exchange_calendars`` (rules plus known ad-hoc closures such as 2001-09-11..14); future ad-hoc
  closures are by nature unknown.
- The XNYS schedule is built from ``exchange_calendars`` once per process, lazily and under a lock (it takes
  a few hundred milliseconds plus the pandas import); afterwards every query is pure Python (bisect over
  tuples), so hot paths never touch pandas.
- Settlement is T+N XNYS business days (sessions): weekends, XNYS holidays and ad-hoc closures are skipped,
  early-close days count. ``AlwaysOpenCalendar`` uses the same XNYS rule for settlement.
"""

from __future__ import annotations

import bisect
import enum
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from time import perf_counter
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo

__all__ = [
    "NEW_YORK",
    "SUPPORTED_END",
    "SUPPORTED_START",
    "AlwaysOpenCalendar",
    "CalendarRangeError",
    "Clock",
    "FixedClock",
    "MarketCalendar",
    "OffsetClock",
    "Phase",
    "Session",
    "SystemClock",
    "XNYSCalendar",
    "alpaca_calendar",
    "alpaca_clock",
]

NEW_YORK = ZoneInfo("America/New_York")
SUPPORTED_START = date(2000, 1, 1)
SUPPORTED_END = date(2030, 12, 31)

_PRE_OPEN_ET = time(4, 0)
_POST_CLOSE_ET = time(20, 0)
_REGULAR_CLOSE_ET = time(16, 0)
# Extended hours end four hours after the close: 20:00 normally, 17:00 on a 13:00 early-close day.
_POST_SESSION_LENGTH = timedelta(hours=4)


class CalendarRangeError(ValueError):
    """A query needed a session date outside ``SUPPORTED_START`` .. ``SUPPORTED_END``."""


def _require_aware(ts: datetime, name: str = "timestamp") -> datetime:
    """Return ``ts`` converted to UTC; reject naive datetimes rather than guess their zone."""
    if not isinstance(ts, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(ts).__name__}")
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {ts.isoformat()}")
    return ts.astimezone(UTC)


def _require_date(d: date, name: str = "date") -> date:
    # datetime is a subclass of date; passing one where a session date is meant is almost always a bug.
    if isinstance(d, datetime) or not isinstance(d, date):
        raise TypeError(f"{name} must be a datetime.date (not a datetime), got {type(d).__name__}")
    return d


def _check_range(d: date) -> date:
    _require_date(d)
    if not SUPPORTED_START <= d <= SUPPORTED_END:
        raise CalendarRangeError(
            f"{d.isoformat()} is outside the supported market calendar range "
            f"{SUPPORTED_START.isoformat()}..{SUPPORTED_END.isoformat()}"
        )
    return d


# --------------------------------------------------------------------------------------------- clocks


@runtime_checkable
class Clock(Protocol):
    """A source of the current instant. Inject one instead of calling ``datetime.now``."""

    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


class FixedClock:
    """A clock that stands still until told otherwise; for tests and deterministic replays."""

    def __init__(self, dt: datetime) -> None:
        self._now = _require_aware(dt, "dt")

    def now(self) -> datetime:
        return self._now

    def set(self, dt: datetime) -> None:
        """Move the clock to ``dt`` (any aware datetime; stored as UTC). Going backwards is allowed."""
        self._now = _require_aware(dt, "dt")

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by ``delta`` (may be negative) and return the new instant."""
        self._now = self._now + delta
        return self._now

    def __repr__(self) -> str:
        return f"FixedClock({self._now.isoformat()})"


class OffsetClock:
    """Another clock (the system clock by default) shifted by a fixed offset.

    Lets a demo or staging environment run "as if" at another moment while time still flows.
    """

    def __init__(self, offset: timedelta, base: Clock | None = None) -> None:
        self.offset = offset
        self._base: Clock = base if base is not None else SystemClock()

    @classmethod
    def starting_at(cls, dt: datetime, base: Clock | None = None) -> OffsetClock:
        """An offset clock whose ``now()`` equals ``dt`` at the moment of construction."""
        base_clock: Clock = base if base is not None else SystemClock()
        return cls(_require_aware(dt, "dt") - base_clock.now(), base_clock)

    def now(self) -> datetime:
        return _require_aware(self._base.now()) + self.offset

    def __repr__(self) -> str:
        return f"OffsetClock({self.offset!r}, base={self._base!r})"


# --------------------------------------------------------------------------------------- value types


class Phase(enum.StrEnum):
    """Where an instant falls within the trading day. Values follow Alpaca's v3 clock vocabulary."""

    PRE_MARKET = "pre"
    REGULAR = "core"
    POST_MARKET = "post"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Session:
    """One trading day. All instants are UTC; ``pre_open <= open < close <= post_close``."""

    date: date
    pre_open: datetime
    open: datetime
    close: datetime
    post_close: datetime
    early_close: bool

    def phase_at(self, ts: datetime) -> Phase:
        """The phase of ``ts`` relative to this session alone (half-open intervals)."""
        ts = _require_aware(ts)
        if self.pre_open <= ts < self.open:
            return Phase.PRE_MARKET
        if self.open <= ts < self.close:
            return Phase.REGULAR
        if self.close <= ts < self.post_close:
            return Phase.POST_MARKET
        return Phase.CLOSED


@runtime_checkable
class MarketCalendar(Protocol):
    """What the rest of the platform asks about market time. All datetimes aware UTC in and out."""

    name: str
    # The zone session wall-clock times are expressed in (the Alpaca calendar's "09:30" etc.).
    timezone: ZoneInfo

    def is_trading_day(self, d: date) -> bool:
        """Whether ``d`` has a session."""
        ...

    def session(self, d: date) -> Session | None:
        """The session on ``d``, or ``None`` on weekends and holidays."""
        ...

    def next_session(self, after: datetime) -> Session:
        """The first session whose regular open is strictly after ``after``."""
        ...

    def previous_session(self, before: datetime) -> Session:
        """The last session whose regular close is at or before ``before``."""
        ...

    def sessions_between(self, start_date: date, end_date: date) -> list[Session]:
        """Sessions with ``start_date <= date <= end_date``, in order."""
        ...

    def phase(self, ts: datetime) -> Phase:
        """The market phase at ``ts``."""
        ...

    def is_open(self, ts: datetime) -> bool:
        """Whether regular trading hours are in progress at ``ts``."""
        ...

    def next_open(self, ts: datetime) -> datetime:
        """The first regular open strictly after ``ts``."""
        ...

    def next_close(self, ts: datetime) -> datetime:
        """The first regular close strictly after ``ts``."""
        ...

    def trade_date(self, ts: datetime) -> date:
        """The session date a trade executed at ``ts`` belongs to."""
        ...

    def settlement_date(self, trade_date: date, days: int = 1) -> date:
        """The ``days``-th XNYS business day after ``trade_date`` (T+N)."""
        ...


# ------------------------------------------------------------------------------------ XNYS schedule


@dataclass(frozen=True, slots=True)
class _Schedule:
    """The XNYS sessions in plain Python, sorted by date; parallel tuples for bisect."""

    dates: tuple[date, ...]
    opens: tuple[datetime, ...]
    closes: tuple[datetime, ...]
    index: dict[date, int]
    build_seconds: float


_schedule_lock = threading.Lock()
_schedule: _Schedule | None = None


def _load_schedule() -> _Schedule:
    """Build (once) and return the XNYS schedule; thread-safe, later calls are a global read."""
    global _schedule  # a process-wide cache is the point
    if _schedule is not None:
        return _schedule
    with _schedule_lock:
        if _schedule is None:
            _schedule = _build_schedule()
    return _schedule


def _build_schedule() -> _Schedule:
    started = perf_counter()
    # Imported here: exchange_calendars pulls in pandas (~1 s), which most processes never need.
    import exchange_calendars

    with warnings.catch_warnings():
        # exchange_calendars trips pandas 3 deprecation warnings internally; they are not ours to fix.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        cal = exchange_calendars.get_calendar(
            "XNYS", start=SUPPORTED_START.isoformat(), end=SUPPORTED_END.isoformat()
        )
        frame = cal.schedule
    dates: list[date] = []
    opens: list[datetime] = []
    closes: list[datetime] = []
    for label, open_ts, close_ts in zip(frame.index, frame["open"], frame["close"], strict=True):
        dates.append(label.date())
        opens.append(open_ts.to_pydatetime().astimezone(UTC))
        closes.append(close_ts.to_pydatetime().astimezone(UTC))
    if not dates or dates[0] < SUPPORTED_START or dates[-1] > SUPPORTED_END:
        raise RuntimeError("exchange_calendars returned an XNYS schedule outside the requested range")
    return _Schedule(
        dates=tuple(dates),
        opens=tuple(opens),
        closes=tuple(closes),
        index={d: i for i, d in enumerate(dates)},
        build_seconds=perf_counter() - started,
    )


def _et(d: date, t: time) -> datetime:
    """The UTC instant of wall-clock ``t`` on ``d`` in New York."""
    return datetime.combine(d, t, tzinfo=NEW_YORK).astimezone(UTC)


class XNYSCalendar:
    """The New York Stock Exchange calendar: holidays, ad-hoc closures, early closes, DST.

    Extended hours follow Alpaca: pre-market from 04:00 ET, post-market until 20:00 ET (17:00 ET on 13:00
    early-close days). Construction is free; the schedule is loaded on first use (``preload()`` to warm up).
    """

    name = "XNYS"
    timezone = NEW_YORK

    def preload(self) -> float:
        """Load the shared schedule now; returns how long the one-time build took, in seconds."""
        return _load_schedule().build_seconds

    # -- internal helpers

    def _session_at(self, i: int) -> Session:
        sched = _load_schedule()
        d, open_, close = sched.dates[i], sched.opens[i], sched.closes[i]
        early = close < _et(d, _REGULAR_CLOSE_ET)
        post_close = close + _POST_SESSION_LENGTH if early else _et(d, _POST_CLOSE_ET)
        return Session(
            date=d,
            pre_open=_et(d, _PRE_OPEN_ET),
            open=open_,
            close=close,
            post_close=post_close,
            early_close=early,
        )

    @staticmethod
    def _first_after(instants: Sequence[datetime], ts: datetime, what: str) -> int:
        i = bisect.bisect_right(instants, ts)
        if i >= len(instants):
            raise CalendarRangeError(
                f"no XNYS {what} after {ts.isoformat()} within the supported range "
                f"{SUPPORTED_START.isoformat()}..{SUPPORTED_END.isoformat()}"
            )
        return i

    # -- MarketCalendar

    def is_trading_day(self, d: date) -> bool:
        return _check_range(d) in _load_schedule().index

    def session(self, d: date) -> Session | None:
        i = _load_schedule().index.get(_check_range(d))
        return None if i is None else self._session_at(i)

    def next_session(self, after: datetime) -> Session:
        after = _require_aware(after, "after")
        return self._session_at(self._first_after(_load_schedule().opens, after, "session"))

    def previous_session(self, before: datetime) -> Session:
        before = _require_aware(before, "before")
        i = bisect.bisect_right(_load_schedule().closes, before) - 1
        if i < 0:
            raise CalendarRangeError(
                f"no XNYS session before {before.isoformat()} within the supported range "
                f"{SUPPORTED_START.isoformat()}..{SUPPORTED_END.isoformat()}"
            )
        return self._session_at(i)

    def sessions_between(self, start_date: date, end_date: date) -> list[Session]:
        _check_range(start_date)
        _check_range(end_date)
        dates = _load_schedule().dates
        lo = bisect.bisect_left(dates, start_date)
        hi = bisect.bisect_right(dates, end_date)
        return [self._session_at(i) for i in range(lo, hi)]

    def phase(self, ts: datetime) -> Phase:
        # Every phase of a session lies within its own New York calendar day, so one lookup suffices.
        session = self.session(self.trade_date(ts))
        return Phase.CLOSED if session is None else session.phase_at(ts)

    def is_open(self, ts: datetime) -> bool:
        return self.phase(ts) is Phase.REGULAR

    def next_open(self, ts: datetime) -> datetime:
        sched = _load_schedule()
        return sched.opens[self._first_after(sched.opens, _require_aware(ts), "open")]

    def next_close(self, ts: datetime) -> datetime:
        sched = _load_schedule()
        return sched.closes[self._first_after(sched.closes, _require_aware(ts), "close")]

    def trade_date(self, ts: datetime) -> date:
        """The America/New_York calendar date of ``ts`` (any instant; no range check needed)."""
        return _require_aware(ts).astimezone(NEW_YORK).date()

    def settlement_date(self, trade_date: date, days: int = 1) -> date:
        """T+``days`` XNYS business days; a non-business ``trade_date`` counts from the next one.

        Only exchange sessions count: weekends, XNYS holidays and ad-hoc closures are skipped, early-close
        days count. (DTC additionally treats Columbus and Veterans Day as non-settlement days; that is not
        modelled here.)
        """
        if days < 1:
            raise ValueError(f"days must be >= 1, got {days}")
        dates = _load_schedule().dates
        i = bisect.bisect_right(dates, _check_range(trade_date)) + days - 1
        if i >= len(dates):
            raise CalendarRangeError(
                f"settlement date for {trade_date.isoformat()} (T+{days}) is after the supported range end "
                f"{SUPPORTED_END.isoformat()}"
            )
        return dates[i]

    def next_trading_date(self, d: date) -> date:
        """The first session date strictly after ``d``."""
        return self.settlement_date(d, 1)

    def previous_trading_date(self, d: date) -> date:
        """The last session date strictly before ``d``."""
        dates = _load_schedule().dates
        i = bisect.bisect_left(dates, _check_range(d)) - 1
        if i < 0:
            raise CalendarRangeError(
                f"no XNYS session before {d.isoformat()} within the supported range "
                f"{SUPPORTED_START.isoformat()}..{SUPPORTED_END.isoformat()}"
            )
        return dates[i]

    def __repr__(self) -> str:
        return "XNYSCalendar()"


class AlwaysOpenCalendar:
    """A simulated demo market that never closes, so a newcomer can trade at any hour.

    Every date is a trading day; a session is a whole UTC day, open at 00:00 UTC and close at 24:00 UTC
    (the next day's 00:00), with no extended hours (``pre_open == open``, ``post_close == close``);
    ``phase()`` is always REGULAR. ``trade_date`` is therefore the UTC date, so that a trade always
    belongs to the session that contains it.

    Settlement still follows the real XNYS business-day rule (T+1 skips weekends and XNYS holidays), so
    cash and positions settle as they would for real; a Saturday trade settles on the XNYS business day
    after it. The same supported date range applies as for ``XNYSCalendar``.
    """

    name = "ALWAYS_OPEN"
    timezone = ZoneInfo("UTC")

    def __init__(self) -> None:
        self._xnys = XNYSCalendar()

    @staticmethod
    def _midnight(d: date) -> datetime:
        return datetime.combine(d, time(0), tzinfo=UTC)

    def _session_for(self, d: date) -> Session:
        _check_range(d)
        start = self._midnight(d)
        end = start + timedelta(days=1)
        return Session(date=d, pre_open=start, open=start, close=end, post_close=end, early_close=False)

    def _next_midnight(self, ts: datetime) -> datetime:
        # Opens and closes both happen at every UTC midnight; "strictly after" like XNYSCalendar.
        d = _require_aware(ts).date() + timedelta(days=1)
        _check_range(d)
        return self._midnight(d)

    def is_trading_day(self, d: date) -> bool:
        _check_range(d)
        return True

    def session(self, d: date) -> Session | None:
        return self._session_for(d)

    def next_session(self, after: datetime) -> Session:
        return self._session_for(self._next_midnight(after).date())

    def previous_session(self, before: datetime) -> Session:
        # The UTC day that ended at or before ``before``: the day before the one containing it.
        return self._session_for(_require_aware(before, "before").date() - timedelta(days=1))

    def sessions_between(self, start_date: date, end_date: date) -> list[Session]:
        _check_range(start_date)
        _check_range(end_date)
        n = (end_date - start_date).days + 1
        return [self._session_for(start_date + timedelta(days=k)) for k in range(max(n, 0))]

    def phase(self, ts: datetime) -> Phase:
        _check_range(self.trade_date(ts))
        return Phase.REGULAR

    def is_open(self, ts: datetime) -> bool:
        return self.phase(ts) is Phase.REGULAR

    def next_open(self, ts: datetime) -> datetime:
        return self._next_midnight(ts)

    def next_close(self, ts: datetime) -> datetime:
        return self._next_midnight(ts)

    def trade_date(self, ts: datetime) -> date:
        """The UTC date of ``ts`` (the demo session containing it)."""
        return _require_aware(ts).date()

    def settlement_date(self, trade_date: date, days: int = 1) -> date:
        """Real XNYS T+``days``, regardless of the demo market being always open."""
        return self._xnys.settlement_date(trade_date, days)

    def __repr__(self) -> str:
        return "AlwaysOpenCalendar()"


# -------------------------------------------------------------------------------------- Alpaca shapes


def _iso_et(ts: datetime) -> str:
    """ISO-8601 with the New York offset, as Alpaca renders clock timestamps."""
    return _require_aware(ts).astimezone(NEW_YORK).isoformat()


def alpaca_clock(calendar: MarketCalendar, now: datetime) -> dict[str, str | bool]:
    """The body of Alpaca's ``GET /v2/clock`` (schema ``legacy_clock``) at ``now``.

    Example: ``{"timestamp": "2025-06-24T14:15:22-04:00", "is_open": True,
    "next_open": "2025-06-25T09:30:00-04:00", "next_close": "2025-06-24T16:00:00-04:00"}``.
    """
    return {
        "timestamp": _iso_et(now),
        "is_open": calendar.is_open(now),
        "next_open": _iso_et(calendar.next_open(now)),
        "next_close": _iso_et(calendar.next_close(now)),
    }


def _wall(session_date: date, ts: datetime, zone: ZoneInfo, fmt: str) -> str:
    local = ts.astimezone(zone)
    if local.date() > session_date:
        # A close at 24:00 (AlwaysOpenCalendar). alpaca-py parses "HH:MM" with strptime, which rejects
        # "24:00", so report the last minute of the day instead.
        return time(23, 59).strftime(fmt)
    return local.strftime(fmt)


def alpaca_calendar(calendar: MarketCalendar, start: date, end: date) -> list[dict[str, str]]:
    """The body of Alpaca's ``GET /v2/calendar`` (schema ``legacy_calendar_day`` list), inclusive.

    Times are wall-clock in ``calendar.timezone`` (New York for XNYS, UTC for the demo market):
    ``open``/``close`` as ``HH:MM``, ``session_open``/``session_close`` (extended hours) as ``HHMM``,
    ``settlement_date`` is T+1. Example row: ``{"date": "2026-11-27", "open": "09:30", "close": "13:00",
    "session_open": "0400", "session_close": "1700", "settlement_date": "2026-11-30"}``.
    """
    zone = calendar.timezone
    return [
        {
            "date": s.date.isoformat(),
            "open": _wall(s.date, s.open, zone, "%H:%M"),
            "close": _wall(s.date, s.close, zone, "%H:%M"),
            "session_open": _wall(s.date, s.pre_open, zone, "%H%M"),
            "session_close": _wall(s.date, s.post_close, zone, "%H%M"),
            "settlement_date": calendar.settlement_date(s.date).isoformat(),
        }
        for s in calendar.sessions_between(start, end)
    ]
