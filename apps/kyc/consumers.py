"""Kafka consumers of the kyc app.

``kyc.transfers`` (Kafka → Celery bridge on ``transfers.events``): a ``TransferQueued`` event starts the simulated
ACH/wire/ACATS step chain. It runs inside ``inbox_apply`` (once per event id) and enqueues on commit; if the
enqueue is lost, ``transfers_sweep`` advances the transfer anyway.
"""

from __future__ import annotations

from django.db import transaction

from apps.core import events
from apps.core.consumers import ConsumerSpec, MessageMeta, consumer_register


def transfer_event_handle(envelope: events.EventEnvelope, meta: MessageMeta) -> None:
    if envelope.event_type != "transfers.TransferQueued":
        return
    from apps.kyc.tasks import transfer_simulation_start

    transfer_id = str(envelope.payload["transfer_id"])
    transaction.on_commit(lambda: transfer_simulation_start(transfer_id))


KYC_TRANSFERS = consumer_register(
    ConsumerSpec(
        name="kyc.transfers", topics=("transfers.events",), handler=transfer_event_handle, mode="celery"
    )
)
