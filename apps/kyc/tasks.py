"""Celery tasks of the kyc app: thin wrappers over services, safe to run twice.

- ``transfer_step``: one simulated network step of a transfer (compare-and-set on the status, so a redelivered
  task is a no-op). ``transfer_simulation_start`` chains QUEUED → PENDING → COMPLETE with
  ``TRANSFER_SIMULATION_STEP_SECONDS`` between steps; it is enqueued by the ``kyc.transfers`` bridge consumer.
- ``transfers_sweep`` (beat, every minute): advances transfers whose chain was lost (a worker killed between
  steps), so no transfer stays QUEUED/PENDING forever.
- ``sanctions_rescreen`` (beat, weekly): re-screens every customer against the configured list version.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from celery import chain, shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.transactions import transaction_retry
from apps.kyc.models import Transfer
from apps.kyc.screening import configured_list_dir
from apps.kyc.services.kyc import sanctions_rescreen_all
from apps.kyc.services.transfers import transfer_advance


@shared_task(name="apps.kyc.tasks.transfer_step", acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
def transfer_step(transfer_id: str, from_status: str) -> str:
    return _transfer_step_transaction(transfer_id, from_status)


@transaction_retry
def _transfer_step_transaction(transfer_id: str, from_status: str) -> str:
    """One step in its own outermost transaction, rerun whole on deadlock/serialization failure."""
    with transaction.atomic(durable=True):
        return transfer_advance(transfer_id=transfer_id, from_status=from_status).status


def transfer_simulation_start(transfer_id: str) -> None:
    """Enqueue the step chain (called by the bridge consumer, on commit of its inbox transaction)."""
    delay = int(settings.TRANSFER_SIMULATION_STEP_SECONDS)
    chain(
        transfer_step.si(transfer_id, Transfer.Status.QUEUED).set(countdown=delay),
        transfer_step.si(transfer_id, Transfer.Status.PENDING).set(countdown=delay),
    ).apply_async()


@shared_task(name="apps.kyc.tasks.transfers_sweep", acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
def transfers_sweep(stale_seconds: int = 60) -> int:
    cutoff = timezone.now() - timedelta(seconds=stale_seconds)
    moved = 0
    for status in (Transfer.Status.QUEUED, Transfer.Status.PENDING):
        ids = (
            Transfer.objects.filter(status=status, updated_at__lt=cutoff)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        for transfer_id in ids[:500]:
            if transfer_step(str(transfer_id), status) != status:
                moved += 1
    return moved


@shared_task(name="apps.kyc.tasks.sanctions_rescreen", acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
def sanctions_rescreen(list_dir: str | None = None) -> dict[str, object]:
    summary = sanctions_rescreen_all(list_dir=Path(list_dir) if list_dir else configured_list_dir())
    return {
        "list_version": summary.list_version,
        "screened": summary.screened,
        "new_matches": summary.new_matches,
    }
