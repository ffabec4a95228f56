"""Test settings: the same real PostgreSQL, Redis and Kafka; fast password hashing; isolated Kafka topics."""

import os

from brokerage.settings.base import *  # noqa: F403
from brokerage.settings.base import KAFKA, env

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
