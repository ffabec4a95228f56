"""The configured market calendar and clock (settings ``MARKET_CALENDAR``, ``MARKET_CLOCK_OFFSET_SECONDS``).

Settings are read when called, never at import time, so tests can override them.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

from apps.core.markettime import (
    AlwaysOpenCalendar,
    Clock,
    MarketCalendar,
    OffsetClock,
    SystemClock,
    XNYSCalendar,
)

_XNYS = XNYSCalendar()
_ALWAYS = AlwaysOpenCalendar()
_clock_override: Clock | None = None


def market_calendar() -> MarketCalendar:
    name = settings.MARKET_CALENDAR
    if name == "xnys":
        return _XNYS
    if name == "always_open":
        return _ALWAYS
    raise ValueError(f"MARKET_CALENDAR must be 'xnys' or 'always_open', not {name!r}")


def market_clock() -> Clock:
    """The platform's clock: the system clock plus the configured offset, or a test's override."""
    if _clock_override is not None:
        return _clock_override
    offset = int(settings.MARKET_CLOCK_OFFSET_SECONDS)
    return OffsetClock(timedelta(seconds=offset)) if offset else SystemClock()


def market_clock_override(clock: Clock | None) -> None:
    """Tests control time explicitly: install a FixedClock here (None restores the real one)."""
    global _clock_override
    _clock_override = clock
