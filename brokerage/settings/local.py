"""Local development (``make run``): the base settings with a demo market open around the clock."""

from brokerage.settings.base import *  # noqa: F403
from brokerage.settings.base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
MARKET_CALENDAR = env.str("MARKET_CALENDAR", default="always_open")
