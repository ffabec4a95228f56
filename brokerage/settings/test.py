"""Test settings: the same real PostgreSQL, Redis and Kafka; fast password hashing; isolated Kafka topics."""

import os


def _isolate_test_worker() -> None:
    """Give a pytest-xdist worker (``make test`` runs two) its own Redis DBs and Channels prefix.

    gw0 keeps the given DBs (9 and 10 by default), gwN takes those plus 2N; the channel layer's names carry the
    worker (Redis pub/sub channels are global to the server, not per DB). Written into ``os.environ`` before the
    base settings read it, so every subprocess a test starts (they inherit the environment) lands on the same
    ones; ``TEST_WORKER_ISOLATED`` keeps a subprocess from shifting again. The Kafka prefix (``test<pid>.``) and
    the database (pytest-django's ``_gwN`` suffix) are per worker already.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker or os.environ.get("TEST_WORKER_ISOLATED") == worker:
        return
    shift = 2 * int(worker.removeprefix("gw"))
    for name, default in (
        ("REDIS_URL", "redis://127.0.0.1:56379/9"),
        ("CELERY_BROKER_URL", "redis://127.0.0.1:56379/10"),
    ):
        base, _, db = os.environ.get(name, default).rpartition("/")
        os.environ[name] = f"{base}/{int(db) + shift}"
    os.environ["CHANNEL_LAYER_PREFIX"] = f"asgi-{worker}"
    os.environ["TEST_WORKER_ISOLATED"] = worker


_isolate_test_worker()

from brokerage.settings.base import *  # noqa: E402, F403
from brokerage.settings.base import KAFKA, env  # noqa: E402

DEBUG = False
# Argon2 stays the configured hasher in production; tests use a fast one except where a test asks for Argon2.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
]
# Each test session gets its own topic namespace so parallel runs on one broker never see each other.
KAFKA = {**KAFKA, "TOPIC_PREFIX": env.str("KAFKA_TOPIC_PREFIX", default=f"test{os.getpid()}.")}
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:56379/9")
CACHES = {
    "default": {
        "BACKEND": "apps.core.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    },
}
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="redis://127.0.0.1:56379/10")
# Workers started inside the test process must never SIGTERM it (apps/core/celery_watch.py).
CELERY_WORKER_RESTART_ON_ACK_FAILURE = False
MARKET_CALENDAR = "xnys"
# No heartbeat files from the test run's relays and consumers; a test that checks them sets its own directory.
PROCESS_HEARTBEAT_DIR = env.str("PROCESS_HEARTBEAT_DIR", default="")
# No collectstatic in tests: plain storage instead of the hashed manifest.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
