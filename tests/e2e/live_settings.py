"""Settings of the e2e stack's subprocesses: the test settings, with a market open around the clock.

``brokerage.settings.test`` pins the XNYS calendar (unit tests control time themselves); the live processes run
against the wall clock, so they take ``MARKET_CALENDAR`` from the environment (default ``always_open``).
"""

from brokerage.settings.base import env
from brokerage.settings.test import *  # noqa: F403

MARKET_CALENDAR = env.str("MARKET_CALENDAR", default="always_open")
