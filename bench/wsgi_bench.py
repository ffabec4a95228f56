"""WSGI entry of the benchmark server: the platform's URLs plus the bench-only bare DRF endpoint.

Only ``bench/rest.py`` starts gunicorn with this module; the platform's own ``brokerage.wsgi`` never mounts
anything from ``bench/``.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brokerage.settings.local")

import django
from django.conf import settings

django.setup()
settings.ROOT_URLCONF = "bench.bare_urls"

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
