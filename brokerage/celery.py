"""The Celery application.

Celery workers are fed by the Kafka -> Celery bridge (``apps.core.bridge``), never by the web tier directly.
Configuration lives in ``brokerage.settings.base`` under the ``CELERY_`` namespace.
"""

import os

from celery import Celery
from celery.signals import worker_init

from apps.core.celery_liveness import LivenessPing, liveness_reset
from apps.core.celery_watch import install as ack_failure_restart_install

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brokerage.settings.local")

app = Celery("brokerage")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# A worker whose broker connection broke under an ack shuts down warm for a restart (apps/core/celery_watch.py).
worker_init.connect(ack_failure_restart_install, weak=False)
# Every interval the worker pings itself through its direct queue; the container health check reads the result
# (apps/core/celery_liveness.py, deploy/healthcheck.py).
app.steps["consumer"].add(LivenessPing)
worker_init.connect(liveness_reset, weak=False)
