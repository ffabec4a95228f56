"""Bounded retry of whole transactions on deadlock (40P01) and serialization failure (40001).

PostgreSQL aborts one of two transactions that deadlock, or a SERIALIZABLE/REPEATABLE READ transaction that
lost a race; the work itself was valid and succeeds when the WHOLE transaction runs again. Clients must never
see these as errors.

Invariants:
- Only an outermost transaction is retried: inside an enclosing ``atomic`` block the enclosing transaction is
  already aborted, so the error is re-raised for the outermost boundary to handle.
- At most ``attempts`` runs; the last failure propagates unchanged. Backoff is jittered and capped so two
  victims of the same deadlock do not collide again in lockstep.
- Nothing else is retried: a constraint violation or a business error is an outcome, not a transient fault.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar, overload

from django.db import DatabaseError, transaction

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

DEADLOCK_DETECTED = "40P01"
SERIALIZATION_FAILURE = "40001"
RETRYABLE_SQLSTATES = frozenset({DEADLOCK_DETECTED, SERIALIZATION_FAILURE})
DEFAULT_ATTEMPTS = 5

# Sleeps come from here (not the module-level ``random``) so a test may seed it; jitter needs no crypto.
_jitter = random.Random()  # noqa: S311


def sqlstate_of(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error (Django wraps the driver's exception as ``__cause__``)."""
    for candidate in (exc, exc.__cause__):
        state = getattr(candidate, "sqlstate", None)
        if isinstance(state, str):
            return state
    return None


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, DatabaseError) and sqlstate_of(exc) in RETRYABLE_SQLSTATES


@overload
def transaction_retry(func: Callable[P, T], /) -> Callable[P, T]: ...
@overload
def transaction_retry(
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    base_delay: float = 0.005,
    max_delay: float = 0.2,
    using: str = "default",
) -> Callable[[Callable[P, T]], Callable[P, T]]: ...
def transaction_retry(
    func: Callable[P, T] | None = None,
    /,
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    base_delay: float = 0.005,
    max_delay: float = 0.2,
    using: str = "default",
) -> Callable[P, T] | Callable[[Callable[P, T]], Callable[P, T]]:
    """Run ``func`` again (whole) when it fails with a deadlock or serialization failure.

    ``func`` must open its own outermost transaction (``transaction.atomic(durable=True)``) and have no effects
    outside the database before it commits, so that a rerun is indistinguishable from a first run.
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            for attempt in range(1, attempts + 1):
                try:
                    return fn(*args, **kwargs)
                except DatabaseError as exc:
                    if (
                        not is_retryable(exc)
                        or attempt == attempts
                        or transaction.get_connection(using).in_atomic_block
                    ):
                        raise
                    delay = min(max_delay, base_delay * 2 ** (attempt - 1)) * (0.5 + _jitter.random())
                    logger.warning(
                        "transaction retry",
                        extra={
                            "function": fn.__qualname__,
                            "attempt": attempt,
                            "sqlstate": sqlstate_of(exc),
                            "delay_s": round(delay, 4),
                        },
                    )
                    time.sleep(delay)
            raise AssertionError("unreachable")  # pragma: no cover

        return wrapper

    if func is not None:
        return decorate(func)
    return decorate
