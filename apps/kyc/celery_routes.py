"""Celery routing of the kyc app's Kafka -> Celery bridges.

``apps.core.tasks.consumer_event_apply`` (one event) and ``consumer_events_apply`` (a chunk) serve every bridge
and are routed to ``default`` by name; the bridges
whose work is compliance's (AML on executed trades) go to the ``compliance`` queue instead, so a backlog of
trades never queues behind (or in front of) other apps' bridge work. Listed first in ``CELERY_TASK_ROUTES``.
"""

from __future__ import annotations

from typing import Any

BRIDGE_TASKS = frozenset({"apps.core.tasks.consumer_event_apply", "apps.core.tasks.consumer_events_apply"})
COMPLIANCE_BRIDGES = frozenset({"kyc.aml_trades"})


def compliance_bridge_route(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any
) -> dict[str, str] | None:
    """Celery router: ``{"queue": "compliance"}`` for a compliance bridge's task, else None (next router)."""
    consumer = (args[0] if args else None) or (kwargs or {}).get("consumer_name")
    if name in BRIDGE_TASKS and consumer in COMPLIANCE_BRIDGES:
        return {"queue": "compliance"}
    return None
