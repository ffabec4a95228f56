"""Liveness, readiness (real dependencies, circuit breakers) and metrics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings
from django.test import Client, override_settings

from apps.core import health

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    for breaker in health.BREAKERS.values():
        breaker.close()
    yield
    for breaker in health.BREAKERS.values():
        breaker.close()
    health._draining.clear()


def test_healthz_is_alive_without_touching_dependencies(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["X-Request-ID"]


def test_readyz_reports_every_real_dependency_healthy(client: Client) -> None:
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ready"
    assert {name: dep["status"] for name, dep in body["dependencies"].items()} == {
        "postgres": "ok",
        "redis": "ok",
        "kafka": "ok",
    }


def test_dead_dependency_answers_fast_then_trips_the_breaker(client: Client) -> None:
    # Nothing listens on port 1: Redis and Kafka checks fail; the breaker opens after two failures.
    with override_settings(
        REDIS_URL="redis://127.0.0.1:1/0",
        KAFKA={**settings.KAFKA, "BOOTSTRAP_SERVERS": "127.0.0.1:1"},
    ):
        for _ in range(2):
            response = client.get("/readyz")
            assert response.status_code == 503
        response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["dependencies"]["postgres"]["status"] == "ok"
    assert body["dependencies"]["redis"]["status"] == "down"
    assert body["dependencies"]["redis"]["error"] == "circuit open"
    assert body["dependencies"]["kafka"]["error"] == "circuit open"
    # "circuit open" means the check was not even attempted: no connection timeout to wait for.


def test_probes_answer_for_hosts_outside_allowed_hosts(client: Client) -> None:
    # An ALB health check addresses the task by its private IP.
    assert client.get("/healthz", HTTP_HOST="10.0.3.17:8000").status_code == 200
    assert client.get("/readyz", HTTP_HOST="10.0.3.17:8000").status_code == 200
    assert client.get("/v2/clock", HTTP_HOST="10.0.3.17:8000").status_code == 400


def test_readiness_goes_false_when_draining(client: Client) -> None:
    health.draining_begin()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["draining"] is True
    assert client.get("/healthz").status_code == 200


def test_metrics_exposes_request_counters(client: Client) -> None:
    status = client.get("/v2/clock").status_code  # unauthenticated: refused, and still counted
    text = client.get("/metrics").content.decode()
    assert f'http_requests_total{{method="GET",route="v2/clock",status="{status}"}}' in text
