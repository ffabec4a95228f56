"""Liveness, readiness and metrics endpoints.

``/healthz`` says the process is alive and never touches a dependency. ``/readyz`` checks PostgreSQL, Redis and
Kafka, each behind a circuit breaker (pybreaker) with a short timeout, so a dead dependency answers fast
("circuit open") instead of hanging the load balancer's probe. Readiness turns false as soon as the process
starts draining (SIGTERM), before it stops serving.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pybreaker
import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from apps.core import kafka

_draining = threading.Event()


def draining_begin() -> None:
    """Mark this process as shutting down: readiness answers 503 from now on."""
    _draining.set()


def is_draining() -> bool:
    return _draining.is_set()


BREAKERS: dict[str, pybreaker.CircuitBreaker] = {
    name: pybreaker.CircuitBreaker(fail_max=2, reset_timeout=10, name=name)
    for name in ("postgres", "redis", "kafka")
}


def _check_postgres() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_redis() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        client.ping()
    finally:
        client.close()


def _check_kafka() -> None:
    metadata = kafka.admin_client().list_topics(timeout=2.0)
    if not metadata.brokers:
        raise RuntimeError("no brokers in metadata")


CHECKS: dict[str, Callable[[], None]] = {
    "postgres": _check_postgres,
    "redis": _check_redis,
    "kafka": _check_kafka,
}


def dependency_status() -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for name, check in CHECKS.items():
        breaker = BREAKERS[name]
        start = time.perf_counter()
        try:
            breaker.call(check)
            results[name] = {"status": "ok"}
        except pybreaker.CircuitBreakerError:
            results[name] = {"status": "down", "error": "circuit open"}
        except Exception as exc:
            results[name] = {"status": "down", "error": type(exc).__name__}
            if name == "postgres":
                connection.close()
        results[name]["latency_ms"] = round((time.perf_counter() - start) * 1000, 2)
    return results


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    deps = dependency_status()
    ready = all(d["status"] == "ok" for d in deps.values()) and not is_draining()
    body = {"status": "ready" if ready else "not_ready", "draining": is_draining(), "dependencies": deps}
    return JsonResponse(body, status=200 if ready else 503)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
