"""Pre-trade risk rules, configured in ``settings.ORDERS_RISK`` (versioned).

Every rejection is a ``BusinessRuleViolation`` whose body names the rule (``rule``), and whose ``details``
carry ``{"rule", "version", "inputs", "threshold"}`` so a client (or an auditor) can see exactly why.
Settings are read at call time, never at import time. Amounts are Decimal, computed in a wide local context
so that ``price x qty`` never rounds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

import redis
from django.conf import settings

from apps.core.errors import BusinessRuleViolation
from apps.core.money import MONEY_QUANTUM, WIDE


@dataclass(frozen=True, slots=True)
class RiskConfig:
    version: str
    price_collar: Decimal
    max_notional: Decimal
    max_qty: Decimal
    rate_limit_count: int
    rate_limit_window_s: int


def risk_config() -> RiskConfig:
    raw: dict[str, Any] = settings.ORDERS_RISK
    return RiskConfig(
        version=str(raw["version"]),
        price_collar=Decimal(str(raw["price_collar"])),
        max_notional=Decimal(str(raw["max_notional"])),
        max_qty=Decimal(str(raw["max_qty"])),
        rate_limit_count=int(raw["rate_limit_count"]),
        rate_limit_window_s=int(raw["rate_limit_window_s"]),
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def violation(
    rule: str,
    message: str,
    *,
    inputs: dict[str, Any],
    threshold: Any,
    config: RiskConfig | None = None,
    error: str | None = None,
) -> BusinessRuleViolation:
    """Build the one shape of a risk rejection."""
    version = (config or risk_config()).version
    return BusinessRuleViolation(
        message,
        rule=rule,
        error=error or rule,
        details={
            "rule": rule,
            "version": version,
            "inputs": _jsonable(inputs),
            "threshold": _jsonable(threshold),
        },
    )


def money_ceil(value: Decimal) -> Decimal:
    """Round an amount up to the money quantum (a hold never under-reserves)."""
    return value.quantize(MONEY_QUANTUM, rounding=ROUND_CEILING, context=WIDE)


def mul(*values: Decimal) -> Decimal:
    result = Decimal(1)
    for v in values:
        result = WIDE.multiply(result, v)
    return result


def _redis() -> redis.Redis:
    return _redis_for(settings.REDIS_URL)


@functools.cache
def _redis_for(url: str) -> redis.Redis:
    # One client (one connection pool) per process and URL: a client per order paid a TCP connect per order.
    # redis-py's pool notices a fork (pid check), so pre-forked servers get their own connections.
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def rate_limit_check(*, account_id: str, now: datetime, consume: bool, config: RiskConfig) -> None:
    """Fixed-window order-rate limit per account (a Redis counter). ``consume=False`` only peeks (dry run)."""
    window = int(now.timestamp()) // config.rate_limit_window_s
    key = f"orders:rate:{account_id}:{window}"
    client = _redis()
    if consume:
        pipe = client.pipeline()
        pipe.incr(key)
        pipe.expire(key, config.rate_limit_window_s * 2)
        count = int(pipe.execute()[0])
    else:
        raw = client.get(key)
        count = int(raw or 0) + 1
    if count > config.rate_limit_count:
        raise violation(
            "order_rate_limit",
            f"More than {config.rate_limit_count} orders in {config.rate_limit_window_s} s.",
            inputs={"account_id": account_id, "count": count, "window_s": config.rate_limit_window_s},
            threshold=config.rate_limit_count,
            config=config,
        )
