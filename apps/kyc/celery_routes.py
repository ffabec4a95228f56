"""Celery routing of the kyc app's Kafka -> Celery bridges.

``apps.core.tasks.consumer_event_apply`` serves every bridge and is routed to ``default`` by name; the bridges
whose work is compliance's (AML on executed trades) go to the ``compliance`` queue instead, so a backlog of
trades never queues behind (or in front of) other apps' bridge work. Listed first in ``CELERY_TASK_ROUTES``.
"""

from __future__ import annotations

from typing import Any

BRIDGE_TASK = "apps.core.tasks.consumer_event_apply"
COMPLIANCE_BRIDGES = frozenset({"kyc.aml_trades"})


def compliance_bridge_route(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any
) -> dict[str, str] | None:
    """Celery router: ``{"queue": "compliance"}`` for a compliance bridge's task, else None (next router)."""
    consumer = (args[0] if args else None) or (kwargs or {}).get("consumer_name")
    if name == BRIDGE_TASK and consumer in COMPLIANCE_BRIDGES:
        return {"queue": "compliance"}
    return None
