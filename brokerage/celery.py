"""The Celery application.

Celery workers are fed by the Kafka -> Celery bridge (``apps.core.bridge``), never by the web tier directly.
Configuration lives in ``brokerage.settings.base`` under the ``CELERY_`` namespace.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brokerage.settings.local")

app = Celery("brokerage")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
