"""Celery tasks of the Kafka -> Celery bridge. Thin: decode, then ``inbox_apply`` (idempotent by event id)."""

from __future__ import annotations

from celery import shared_task

from apps.core import events
from apps.core.consumers import MessageMeta, consumer_get, inbox_apply


@shared_task(  # type: ignore[untyped-decorator]
    name="apps.core.tasks.consumer_event_apply", acks_late=True, reject_on_worker_lost=True
)
def consumer_event_apply(consumer_name: str, body: str, topic: str, partition: int, offset: int) -> bool:
    spec = consumer_get(consumer_name)
    envelope = events.decode(body.encode())
    return inbox_apply(spec, envelope, MessageMeta(topic=topic, partition=partition, offset=offset, key=None))
