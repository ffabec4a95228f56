"""Redis access for market data: one client per URL, one circuit breaker per URL, idempotent Lua writes.

Keys (``{s}`` = symbol):
- ``md:{s}:trade`` / ``md:{s}:quote`` / ``md:{s}:bar:{tf}``: hashes ``seq`` (engine ``book_seq`` of the
  update), ``cseq`` (per-channel stream sequence, +1 per accepted update) and ``data`` (JSON, Alpaca shape).
- ``md:{s}:bar:1Day:prev``: the previous daily bar (JSON), moved there when a new day's bar starts.
- ``md:{s}:book``: hash ``seq`` (``book_seq`` the book reflects) and ``cseq``; ``md:{s}:book:bids`` /
  ``md:{s}:book:asks``: hashes ``price_e4 -> "qty_e9:order_count"`` (aggregated L2 levels).
- ``md:{s}:ref``: the demo reference price (decimal string).

Invariants:
- Every write is compare-and-set on ``seq`` inside one Lua script: an update whose ``seq`` is not greater than
  the stored one changes nothing (redelivery, replay, or a stale writer), and ``cseq`` moves only on change.
- Redis is a cache: every value can be rebuilt from Kafka (and trades/bars from PostgreSQL).
- Every call goes through the breaker; an open breaker or a Redis error becomes ``RedisUnavailable``
  immediately, never a hang (socket timeouts are short).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import pybreaker
import redis
from django.conf import settings

T = TypeVar("T")


class RedisUnavailable(Exception):
    """Redis cannot answer (down, timing out, or the breaker is open)."""


def trade_key(symbol: str) -> str:
    return f"md:{symbol}:trade"


def quote_key(symbol: str) -> str:
    return f"md:{symbol}:quote"


def bar_key(symbol: str, timeframe: str) -> str:
    return f"md:{symbol}:bar:{timeframe}"


def prev_daily_bar_key(symbol: str) -> str:
    return f"md:{symbol}:bar:1Day:prev"


def book_key(symbol: str) -> str:
    return f"md:{symbol}:book"


def book_side_key(symbol: str, side: str) -> str:
    return f"md:{symbol}:book:{'bids' if side == 'buy' else 'asks'}"


def ref_key(symbol: str) -> str:
    return f"md:{symbol}:ref"


def _breaker_settings() -> dict[str, Any]:
    return dict(getattr(settings, "MARKETDATA_REDIS_BREAKER", {"fail_max": 3, "reset_timeout": 5}))


@functools.cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_connect_timeout=0.5, socket_timeout=1.0, health_check_interval=30, retry_on_timeout=False
    )


@functools.cache
def _breaker(url: str) -> pybreaker.CircuitBreaker:
    conf = _breaker_settings()
    return pybreaker.CircuitBreaker(
        fail_max=int(conf["fail_max"]), reset_timeout=float(conf["reset_timeout"]), name=f"redis:{url}"
    )


def redis_url() -> str:
    return str(getattr(settings, "MARKETDATA_REDIS_URL", None) or settings.REDIS_URL)


def client() -> redis.Redis:
    return _client(redis_url())


def guarded(func: Callable[[redis.Redis], T]) -> T:
    """Run ``func(client)`` behind the URL's circuit breaker; any Redis failure is ``RedisUnavailable``."""
    url = redis_url()
    try:
        return _breaker(url).call(func, _client(url))
    except pybreaker.CircuitBreakerError as exc:
        raise RedisUnavailable(f"redis circuit open: {exc}") from exc
    except redis.RedisError as exc:
        raise RedisUnavailable(f"redis error: {exc}") from exc


# KEYS[1] = hash; ARGV = seq, data. Returns the new cseq, or 0 when seq is not newer.
_CAS_SET = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local seq = tonumber(ARGV[1])
if seq <= cur then return 0 end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'data', ARGV[2])
return redis.call('HINCRBY', KEYS[1], 'cseq', 1)
"""

# KEYS[1] = bar hash, KEYS[2] = prev-bar key (or ''); ARGV = seq, data, bucket start.
# A bar for a new bucket moves the old one to KEYS[2] (the previous daily bar).
_BAR_SET = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local seq = tonumber(ARGV[1])
if seq <= cur then return 0 end
local old_t = redis.call('HGET', KEYS[1], 't')
if old_t and old_t ~= ARGV[3] and KEYS[2] ~= '' then
  redis.call('SET', KEYS[2], redis.call('HGET', KEYS[1], 'data'))
end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'data', ARGV[2], 't', ARGV[3])
return redis.call('HINCRBY', KEYS[1], 'cseq', 1)
"""

# KEYS[1] = book meta hash, KEYS[2] = side hash; ARGV = seq, price_e4, level ('' removes it).
_BOOK_APPLY = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local seq = tonumber(ARGV[1])
if seq <= cur then return 0 end
redis.call('HSET', KEYS[1], 'seq', ARGV[1])
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[2], ARGV[2])
else
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
end
return redis.call('HINCRBY', KEYS[1], 'cseq', 1)
"""


def cas_set(key: str, *, seq: int, data: bytes) -> int:
    """Store ``data`` under ``key`` if ``seq`` is newer; returns the new channel sequence or 0."""
    return int(guarded(lambda r: r.eval(_CAS_SET, 1, key, seq, data)))


def bar_set(key: str, *, prev_key: str, seq: int, data: bytes, bucket: str) -> int:
    return int(guarded(lambda r: r.eval(_BAR_SET, 2, key, prev_key, seq, data, bucket)))


def book_apply(symbol: str, *, side: str, seq: int, price_e4: int, level: str) -> int:
    return int(
        guarded(
            lambda r: r.eval(
                _BOOK_APPLY, 2, book_key(symbol), book_side_key(symbol, side), seq, price_e4, level
            )
        )
    )
