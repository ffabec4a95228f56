"""Celery tasks of the settlement app: thin wrappers over services, safe to run twice."""

from __future__ import annotations

from datetime import date

from celery import shared_task
from django.utils import timezone

from apps.settlement.services import settlement_run, trade_date_of


@shared_task(  # type: ignore[untyped-decorator]
    name="apps.settlement.tasks.settlement_run_due", acks_late=True, reject_on_worker_lost=True
)
def settlement_run_due(as_of: str | None = None) -> int:
    """Settle every trade due on or before ``as_of`` (ISO date; default today in New York)."""
    day = date.fromisoformat(as_of) if as_of else trade_date_of(timezone.now())
    return settlement_run(as_of=day)


@shared_task(  # type: ignore[untyped-decorator]
    name="apps.settlement.tasks.reconciliation_run_all", acks_late=True, reject_on_worker_lost=True
)
def reconciliation_run_all_task() -> dict[str, str]:
    """Run every reconciliation job; returns job -> status. Each run writes its own report."""
    from apps.settlement.reconciliation import reconciliation_run_all

    return {r.job: r.status for r in reconciliation_run_all()}


@shared_task(  # type: ignore[untyped-decorator]
    name="apps.settlement.tasks.corporate_actions_pay_due", acks_late=True, reject_on_worker_lost=True
)
def corporate_actions_pay_due(as_of: str | None = None) -> int:
    """Pay every dividend whose pay date has come (idempotent per corporate action)."""
    from apps.settlement.corporate_actions import corporate_actions_due

    day = date.fromisoformat(as_of) if as_of else trade_date_of(timezone.now())
    return corporate_actions_due(as_of=day)
