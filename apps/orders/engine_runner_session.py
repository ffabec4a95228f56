"""The session clock: SessionOpen/SessionClose commands to every engine partition, once per session.

Invariants:
- Commands go through the outbox (``event_record`` on ``orders.commands``) like every other command, so they
  are ordered with the orders in each partition and survive a crash of the clock.
- Every partition gets exactly one command per (session date, kind): the record key of partition ``p`` is
  ``session_partition_keys(n)[p]``, a key that the producer's default partitioner (librdkafka
  ``consistent_random`` = CRC-32 of the key modulo the partition count) maps to ``p``.
- Idempotent per session date: the event id is uuid5 of (topic, date, kind, partition); a second tick, a
  restarted clock or a second clock finds it recorded (under an advisory lock) and records nothing.
- ``SessionClose`` is also the day-order expiry: the engine expires every ``day`` order at the close.
- No clock is read here: ``now`` is passed in; the command loop reads ``market_clock()``.
"""

from __future__ import annotations

import itertools
import logging
import signal
import threading
import uuid
from datetime import date, datetime, timedelta
from types import FrameType
from typing import Literal

import msgspec
from django.db import connection, transaction

from apps.core import kafka
from apps.core.markettime import MarketCalendar, Session
from apps.core.models import StoredEvent
from apps.core.outbox import event_record
from apps.core.runtime import Heartbeat, heartbeat_path
from apps.orders.engine_runner import ENGINE_NAMESPACE, command_event_type
from engine.commands import SessionClose, SessionOpen

logger = logging.getLogger(__name__)

SessionKind = Literal["open", "close"]
# Serializes concurrent clocks (a transaction-level advisory lock; arbitrary but fixed).
SESSION_CLOCK_LOCK_KEY = 0x0B0C_0E01


def session_partition_keys(partitions: int) -> list[str]:
    """Keys ``session-<i>``, the first one landing on each partition under CRC-32 % partitions."""
    return kafka.keys_per_partition(partitions, (f"session-{i}" for i in itertools.count()))


def session_event_id(*, topic: str, session_date: date, kind: SessionKind, partition: int) -> uuid.UUID:
    return uuid.uuid5(ENGINE_NAMESPACE, f"session:{topic}:{session_date.isoformat()}:{kind}:p{partition}")


def session_commands_record(
    *,
    kind: SessionKind,
    session_date: date,
    occurred_at: datetime,
    partitions: int,
    topic: str = "orders.commands",
) -> int:
    """Record one session command per partition unless already recorded. Returns how many were recorded."""
    command = SessionOpen() if kind == "open" else SessionClose()
    keys = session_partition_keys(partitions)
    recorded = 0
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SESSION_CLOCK_LOCK_KEY])
        for partition, key in enumerate(keys):
            event_id = session_event_id(
                topic=topic, session_date=session_date, kind=kind, partition=partition
            )
            if StoredEvent.objects.filter(event_id=event_id).exists():
                continue
            event_record(
                topic=topic,
                key=key,
                event_type=command_event_type(command),
                aggregate_type="market_session",
                aggregate_id=session_date.isoformat(),
                payload={
                    "command": msgspec.to_builtins(command),
                    "session_date": session_date.isoformat(),
                    "partition": partition,
                },
                occurred_at=occurred_at,
                event_id=event_id,
            )
            recorded += 1
    return recorded


def _due_sessions(calendar: MarketCalendar, now: datetime) -> list[Session]:
    """The latest session that has opened, and the one before it (so a missed close is caught up)."""
    day = calendar.trade_date(now)
    recent = [s for s in calendar.sessions_between(day - timedelta(days=10), day) if s.open <= now]
    return recent[-2:]


def session_clock_tick(
    *, now: datetime, calendar: MarketCalendar, partitions: int, topic: str = "orders.commands"
) -> list[tuple[date, SessionKind, int]]:
    """Record every due, unrecorded session command; returns (date, kind, recorded count) for new ones."""
    done: list[tuple[date, SessionKind, int]] = []
    sessions = _due_sessions(calendar, now)
    for i, session in enumerate(sessions):
        steps: list[tuple[SessionKind, datetime]] = []
        if i == len(sessions) - 1:
            steps.append(("open", session.open))  # an old session's open is never replayed late
        if session.close <= now:
            steps.append(("close", session.close))
        for kind, at in steps:
            count = session_commands_record(
                kind=kind, session_date=session.date, occurred_at=at, partitions=partitions, topic=topic
            )
            if count:
                logger.info("session command recorded", extra={"date": str(session.date), "kind": kind})
                done.append((session.date, kind, count))
    return done


class SessionClock:
    """The ``run_session_clock`` loop: tick every ``interval`` seconds until SIGTERM."""

    def __init__(self, *, calendar: MarketCalendar, partitions: int, topic: str, interval: float) -> None:
        self.calendar = calendar
        self.partitions = partitions
        self.topic = topic
        self.interval = interval
        self.stopping = threading.Event()

    def stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        self.stopping.set()

    def run(self, *, once: bool = False) -> int:
        from apps.core.markettime_config import market_clock

        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        logger.info("session clock ready", extra={"partitions": self.partitions, "topic": self.topic})
        recorded = 0
        heartbeat = Heartbeat(heartbeat_path("clock"))
        while not self.stopping.is_set():
            heartbeat.beat()
            try:
                recorded += sum(
                    n
                    for _d, _k, n in session_clock_tick(
                        now=market_clock().now(),
                        calendar=self.calendar,
                        partitions=self.partitions,
                        topic=self.topic,
                    )
                )
            except Exception:
                logger.exception("session clock tick failed")  # nothing recorded; retried next tick
                connection.close()
            if once:
                break
            self.stopping.wait(self.interval)
        return recorded
