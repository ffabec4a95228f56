"""Liveness of a Celery worker: proof that it still consumes and runs tasks, read by the container health check.

A worker process can stay up while consuming nothing (a consumer wedged after a broker connection reset without
any failed ack for ``celery_watch`` to see; celery/celery#8030). Its exit status then says nothing, so
``deploy/healthcheck.py`` reads a file instead:

- ``LivenessPing``, a step of the worker's consumer, sends the ``worker_alive`` task every
  ``CELERY_WORKER_LIVENESS_INTERVAL_S`` to the worker's own direct queue (``CELERY_WORKER_DIRECT``: each worker
  consumes ``<nodename>.dq2``), through the broker like any task;
- a pool child runs it, which touches ``CELERY_WORKER_LIVENESS_FILE``;
- the health check fails once the file is older than ``CELERY_WORKER_LIVENESS_MAX_AGE_S`` (above the task hard
  time limit: a ping may wait for a child busy with the longest task), and ECS replaces the task.

A new worker process removes the file (``liveness_reset``) and the step touches it when the consumer starts: no
file counts as healthy, like the container's start period. The step sends a new ping only once the last one ran or
after ``RESEND_AFTER_S`` (a ping lost with a broker restart), so a worker that stops consuming leaves at most a
couple of pings in its queue; they expire, and a worker that later gets the same node name discards them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from celery import bootsteps, shared_task
from celery.utils.nodenames import worker_direct

logger = logging.getLogger(__name__)

TASK_NAME = "apps.core.celery_liveness.worker_alive"
RESEND_AFTER_S = 60.0


@shared_task(name=TASK_NAME, acks_late=False, ignore_result=True)  # type: ignore[untyped-decorator]
def worker_alive(path: str) -> None:
    """Run by a pool child: the worker consumed this ping from its own queue and executed it."""
    Path(path).touch()


def liveness_reset(**_kwargs: Any) -> None:
    """``celery.signals.worker_init`` receiver: a new worker process starts without a liveness file.

    A file left by an earlier worker in the same place (a restart outside a fresh container) would otherwise be
    judged before the new worker consumed anything, and replace it while it is still connecting.
    """
    from django.conf import settings

    path = getattr(settings, "CELERY_WORKER_LIVENESS_FILE", "")
    if path:
        Path(path).unlink(missing_ok=True)


def _mtime_ns(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


class LivenessPing(bootsteps.StartStopStep):  # type: ignore[misc]
    """Consumer step: once the consumer is consuming, ping this worker through its direct queue on the timer."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        from django.conf import settings

        path = getattr(settings, "CELERY_WORKER_LIVENESS_FILE", "")
        self.enabled = bool(c.app.conf.worker_direct) and bool(path)
        self.path = Path(path)
        self.interval = float(getattr(settings, "CELERY_WORKER_LIVENESS_INTERVAL_S", 15.0))
        self.sent_at: float | None = None
        self.sent_mtime_ns: int | None = None
        self.tref: Any = None
        super().__init__(c, **kwargs)

    def start(self, c: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        self.sent_at = self.sent_mtime_ns = None
        self.ping(c)
        self.tref = c.timer.call_repeatedly(self.interval, self.ping, (c,), priority=10)

    def stop(self, c: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    shutdown = stop

    def due(self, now: float, mtime_ns: int | None) -> bool:
        """A new ping when none is outstanding (the last one ran: the file changed since) or the last one is old.

        The file's own timestamps are compared, not the clock: the kernel stamps files with a coarse clock.
        """
        if self.sent_at is None:
            return True
        return mtime_ns != self.sent_mtime_ns or now - self.sent_at >= RESEND_AFTER_S

    def ping(self, c: Any) -> None:
        now, mtime_ns = time.time(), _mtime_ns(self.path)
        if not self.due(now, mtime_ns):
            return
        try:
            c.app.send_task(
                TASK_NAME,
                args=[str(self.path)],
                queue=worker_direct(c.hostname),
                expires=RESEND_AFTER_S,
                retry=False,
            )
        except Exception:  # the broker is down: no ping, so the file ages; the next tick tries again
            logger.warning("liveness ping not sent", exc_info=True)
            return
        self.sent_at, self.sent_mtime_ns = now, mtime_ns
