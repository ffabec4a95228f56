"""Test-suite wiring: the real PostgreSQL, Redis and Kafka must be up, or the run fails loudly.

Nothing here mocks our infrastructure. Each test session uses its own Kafka topic prefix (see
``brokerage.settings.test``), creates the declared topics under it, and deletes them at the end.
"""

from __future__ import annotations

import importlib
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

REQUIRED = {
    "postgres": "DATABASE",
    "redis": "REDIS",
    "kafka": "KAFKA",
}


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _endpoints() -> dict[str, tuple[str, int]]:
    from urllib.parse import urlparse

    db = settings.DATABASES["default"]
    redis_url = urlparse(settings.REDIS_URL)
    kafka_host, kafka_port = settings.KAFKA["BOOTSTRAP_SERVERS"].split(",")[0].rsplit(":", 1)
    return {
        "postgres": (db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)),
        "redis": (redis_url.hostname or "127.0.0.1", redis_url.port or 6379),
        "kafka": (kafka_host, int(kafka_port)),
    }


def _migration_data_back(sender: Any, **kwargs: Any) -> None:
    """Put the data migrations' rows back after a transactional test's flush (Django sends ``post_migrate``).

    Run serially, pytest-django orders transactional tests last, so their flush never reaches a test that reads
    migration data; under pytest-xdist a worker may get a module of plain tests after one that flushed. The roles
    come back by the accounts app's own ``post_migrate`` hook; the AML thresholds' seed is idempotent.
    """
    if sender.label == "kyc":
        from django.apps import apps as global_apps

        importlib.import_module("apps.kyc.migrations.0002_seed_aml_thresholds").seed(global_apps, None)


def pytest_sessionstart(session: pytest.Session) -> None:
    if not session.config.pluginmanager.hasplugin("django"):
        return  # a pure-domain run (-p no:django) needs no services
    from django.db.models.signals import post_migrate

    post_migrate.connect(_migration_data_back, dispatch_uid="tests_migration_data_back")
    missing = [
        f"{name} at {host}:{port}"
        for name, (host, port) in _endpoints().items()
        if not _port_open(host, port)
    ]
    if missing:
        raise pytest.UsageError(
            "The integration suite needs the real services, and these are not reachable: "
            + ", ".join(missing)
            + ". Start them with `scripts/services.sh all start` (make test does this)."
        )


@pytest.fixture(scope="session")
def kafka_topics(django_db_blocker: Any) -> Iterator[list[str]]:
    """Create every declared topic under this session's prefix; delete them at the end."""
    from apps.core import kafka

    created = kafka.topics_ensure()
    yield sorted(created)
    kafka.topics_delete([name for name in created if name.startswith(settings.KAFKA["TOPIC_PREFIX"])])


@pytest.fixture
def fresh_topic() -> Iterator[Any]:
    """Make an extra, uniquely named topic (logical name returned) and delete it afterwards."""
    from apps.core import kafka

    made: list[str] = []

    def make(partitions: int = 1, base: str = "t") -> str:
        logical = f"{base}.{uuid.uuid4().hex[:10]}"
        kafka.topics_ensure([kafka.TopicSpec(name=logical, partitions=partitions, config={})])
        kafka.topics_ensure([kafka.TopicSpec(name=f"{logical}.dlq", partitions=1, config={})])
        made.extend([kafka.topic_name(logical), kafka.topic_name(f"{logical}.dlq")])
        return logical

    yield make
    kafka.topics_delete(made)


@pytest.fixture
def redis_client() -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def md_redis(redis_client: Any) -> Iterator[Any]:
    """The test Redis DB, empty at the start and at the end of each test (a cached price left behind would be
    the "latest price" of a later test elsewhere); the breaker state is per process: reset it."""
    from apps.marketdata import cache as md_cache

    redis_client.flushdb()
    md_cache._breaker.cache_clear()
    yield redis_client
    redis_client.flushdb()
    md_cache._breaker.cache_clear()


@pytest.fixture
def private_kafka(tmp_path: Any) -> Iterator[Any]:
    """A private broker the test may kill -9 and restart (``tests/kafka_broker.py``); the platform's Kafka
    settings point at it for the test's duration."""
    from django.test import override_settings

    from tests.kafka_broker import PrivateKafka

    broker = PrivateKafka(tmp_path / "kafka-run")
    broker.start()
    try:
        with override_settings(KAFKA={**settings.KAFKA, "BOOTSTRAP_SERVERS": broker.bootstrap}):
            yield broker
    finally:
        broker.stop()
