"""The brokerage project package: settings, URL routing, ASGI/WSGI entry points and the Celery app."""

from brokerage.celery import app as celery_app

__all__ = ["celery_app"]
