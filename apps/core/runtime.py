"""Process-level settings of the platform's long-running processes."""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)


def heap_freeze() -> None:
    """Keep everything alive now out of the cyclic collector's full passes, for the rest of the process.

    Called by each long-running process (engine, consumers, outbox relay; the ws server once its reactor runs)
    once start-up is done, right before its loop. Django, the project's modules and their data live as long as
    the process, yet every full (generation 2) collection traversed them all: a 155-190 ms pause in the engine
    process and 175 ms in the projection (once per ~4,000 events), taken in full by every message waiting behind
    it. Frozen objects are still freed by reference counting; only a cycle made of objects alive at this call is
    never collected. Garbage is collected first so none of it is frozen.
    """
    gc.collect()
    gc.freeze()


def heartbeat_path(process: str) -> Path | None:
    """The heartbeat file of a long-running process (``relay``, ``clock``, ``feed``, ``beat``,
    ``consumer-<name>``), or None when heartbeats are off (``PROCESS_HEARTBEAT_DIR`` empty).

    ``deploy/healthcheck.py`` derives the same name from the container's command line and fails the process once
    the file is older than ``PROCESS_HEARTBEAT_MAX_AGE_S``.
    """
    directory = settings.PROCESS_HEARTBEAT_DIR
    return Path(directory) / f"brokerage-{process}.alive" if directory else None


class Heartbeat:
    """A file a process's loop touches each time round (at most once per ``every_s``), to show it is not stuck.

    A loop whose every call is bounded still has no proof of that: a client library call that ignores its timeout
    (the engine met one in librdkafka) leaves the process up and doing nothing, and only its exit used to be
    watched. The loop calls ``beat()`` once per iteration and from inside its waits (a retry backoff during an
    outage is the loop working, not stuck); the container health check reads the file's age.
    """

    __slots__ = ("_failing", "_next", "every_s", "path")

    def __init__(self, path: Path | None, every_s: float = 1.0) -> None:
        self.path = path
        self.every_s = every_s
        self._next = 0.0
        self._failing = False

    def beat(self) -> None:
        now = time.monotonic()
        if self.path is None or now < self._next:
            return
        self._next = now + self.every_s
        try:
            self.path.touch()
        except OSError:
            if not self._failing:  # once per failing spell, not every second
                logger.warning(
                    "cannot touch the heartbeat file", extra={"path": str(self.path)}, exc_info=True
                )
            self._failing = True
        else:
            self._failing = False
