"""A Celery worker whose broker connection broke under an ack restarts instead of going quiet.

kombu's Redis transport (5.7.0 here) can leave the worker's consumer wedged after the connection is reset while a
message is being acked: kombu logs ``Couldn't ack ...`` (CRITICAL) and, when the consumer does not notice the loss,
the worker consumes nothing more while its process stays up (celery/celery#8030, #10205, #10302; found by
``make chaos SEED=9001``: 59 transfers left queued). On that record this handler asks the worker for a warm
shutdown, once (SIGTERM to its main process, where the consumer acks): running tasks finish, unacked messages go
back to the queue, the process exits, and its supervisor (ECS, honcho, the chaos harness) starts a fresh one with
fresh connections. Tasks are idempotent and ``acks_late``, so nothing is lost or done twice.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

ACK_FAILED = "Couldn't ack"  # kombu.message.Message.ack_log_error's message
REQUEST_LOGGER = "celery.worker.request"  # the logger Celery hands to it


class AckFailureRestart(logging.Handler):
    """On kombu's CRITICAL ``Couldn't ack`` record: SIGTERM (warm shutdown) to the worker's main process, once."""

    def __init__(self, pid: int, kill: Callable[[int, int], None] = os.kill) -> None:
        super().__init__(level=logging.CRITICAL)
        self.pid = pid
        self.kill = kill
        self.sent = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.sent or not str(record.msg).startswith(ACK_FAILED):
            return
        self.sent = True
        logger.error(
            "broker connection broke under an ack: warm shutdown, for a restart with fresh connections"
        )
        self.kill(self.pid, signal.SIGTERM)


def install(**_kwargs: Any) -> None:
    """``celery.signals.worker_init`` receiver: runs in the worker's main process, before the pool starts.

    Off where ``CELERY_WORKER_RESTART_ON_ACK_FAILURE`` is false (the test settings: a worker started inside the
    test process must never signal it). Installed once however often the signal fires.
    """
    from django.conf import settings

    if not getattr(settings, "CELERY_WORKER_RESTART_ON_ACK_FAILURE", True):
        return
    log = logging.getLogger(REQUEST_LOGGER)
    if not any(isinstance(h, AckFailureRestart) for h in log.handlers):
        log.addHandler(AckFailureRestart(os.getpid()))
