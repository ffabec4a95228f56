"""Celery beat's scheduler with a heartbeat: a beat that stops ticking is found, not only one that exits.

Beat is a singleton whose silence is invisible: settlement, reconciliation, dividends and the transfer sweep
simply stop being sent. ``HeartbeatScheduler`` is the stock ``PersistentScheduler`` (same schedule file, same
due-time rules) whose every pass touches ``<PROCESS_HEARTBEAT_DIR>/brokerage-beat.alive``
(``apps.core.runtime.Heartbeat``); ``CELERY_BEAT_MAX_LOOP_INTERVAL`` bounds the sleep between passes, so the file
is younger than that plus one pass while beat works, and ``deploy/healthcheck.py`` fails the container once it is
older than ``PROCESS_HEARTBEAT_MAX_AGE_S``.
"""

from __future__ import annotations

from typing import Any

from celery.beat import PersistentScheduler

from apps.core.runtime import Heartbeat, heartbeat_path


class HeartbeatScheduler(PersistentScheduler):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._heartbeat = Heartbeat(heartbeat_path("beat"))
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        interval: float = super().tick(*args, **kwargs)
        self._heartbeat.beat()
        return interval
