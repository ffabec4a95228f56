"""Gunicorn configuration for the web process (``gunicorn brokerage.wsgi -c deploy/gunicorn.conf.py``).

Graceful shutdown: on SIGTERM the master stops accepting connections and gives workers ``graceful_timeout``
seconds to finish in-flight requests; ECS's stopTimeout (deploy/ecs) is longer than that. Each worker marks
itself draining (``apps.core.health.draining_begin``) the moment it is told to stop, so /readyz answers 503
from then on and a load balancer that still probes it takes it out of rotation. All values come from the
environment so the same file serves containers and local runs.
"""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import Any

bind = [f"{os.environ.get('GUNICORN_HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"]  # noqa: S104
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "25"))
# Longer than the ALB idle timeout (60 s), so the load balancer closes idle connections first.
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "65"))
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "5000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "500"))
# /dev/shm: the heartbeat file must not live on a (possibly read-only) container filesystem.
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR", "/dev/shm")  # noqa: S108
accesslog = "-"
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def _draining_begin() -> None:
    from apps.core.health import draining_begin

    draining_begin()


def post_worker_init(worker: Any) -> None:
    """Chain a draining flag in front of the worker's own SIGTERM handler (installed before this hook)."""
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: FrameType | None) -> None:
        _draining_begin()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_term)


def worker_int(worker: Any) -> None:
    """SIGINT/SIGQUIT to a worker: stop reporting ready before it goes."""
    _draining_begin()


def worker_exit(server: Any, worker: Any) -> None:
    """A worker is leaving (shutdown, max_requests recycle): readiness must already be false for it."""
    _draining_begin()
