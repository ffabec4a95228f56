"""Celery tasks of the Kafka -> Celery bridge. Thin: decode, then ``inbox_apply`` (idempotent by event id).

Also the beat-scheduled queue-depth publisher: measures the Redis broker backlog and emits it as EMF metrics.
"""

from __future__ import annotations

import logging

from celery import current_app, shared_task

from apps.core import events
from apps.core.consumers import MessageMeta, consumer_get, inbox_apply, inbox_apply_many
from apps.core.emf import emf_emit

logger = logging.getLogger(__name__)


@shared_task(  # type: ignore[untyped-decorator]
    name="apps.core.tasks.consumer_event_apply", acks_late=True, reject_on_worker_lost=True
)
def consumer_event_apply(consumer_name: str, body: str, topic: str, partition: int, offset: int) -> bool:
    spec = consumer_get(consumer_name)
    envelope = events.decode(body.encode())
    return inbox_apply(spec, envelope, MessageMeta(topic=topic, partition=partition, offset=offset, key=None))


@shared_task(  # type: ignore[untyped-decorator]
    name="apps.core.tasks.consumer_events_apply", acks_late=True, reject_on_worker_lost=True
)
def consumer_events_apply(consumer_name: str, items: list[tuple[str, str, int, int]]) -> int:
    """A bridge chunk (``ConsumerSpec.transaction_batch``): ``[[body, topic, partition, offset], ...]``.

    One transaction for the chunk (``inbox_apply_many``). If it fails, each event is applied on its own
    (``inbox_apply``), as ``consumer_event_apply`` would: the others still apply, and the task fails at the end
    with the first error, like the one-event task of the event that failed. Returns the events applied.
    """
    spec = consumer_get(consumer_name)
    decoded = [
        (events.decode(body.encode()), MessageMeta(topic=topic, partition=partition, offset=offset, key=None))
        for body, topic, partition, offset in items
    ]
    try:
        return inbox_apply_many(spec, decoded)
    except Exception:
        logger.warning("bridge chunk failed; applying it one event at a time", exc_info=True)
    applied, failure = 0, None
    for envelope, meta in decoded:
        try:
            applied += int(inbox_apply(spec, envelope, meta))
        except Exception as exc:
            logger.exception(
                "bridge event failed", extra={"consumer": consumer_name, "event": str(envelope.event_id)}
            )
            failure = failure or exc
    if failure is not None:
        raise failure
    return applied


# Queue-depth metric (issue 8): the worker service scales on Brokerage/CeleryQueueDepth with no dimensions
# (deploy/ecs/stacks/platform.py queue_depth_metric), so the total over all queues is published without
# dimensions; each queue also gets its own CeleryQueueDepth{Queue=<name>} for dashboards.
QUEUE_DEPTH_METRIC = "CeleryQueueDepth"
QUEUE_DIMENSION = "Queue"


def celery_queue_names() -> list[str]:
    """Every queue the configuration routes to: the default queue, dict routes, and declared task_queues."""
    conf = current_app.conf
    names = {str(conf.task_default_queue)}
    routes = conf.task_routes or ()
    for route in routes if isinstance(routes, (list, tuple)) else (routes,):
        if isinstance(route, dict):
            names.update(str(r["queue"]) for r in route.values() if isinstance(r, dict) and "queue" in r)
    names.update(str(q.name) for q in conf.task_queues or ())
    return sorted(names)


def celery_queue_depths(queues: list[str]) -> dict[str, int]:
    """Backlog per queue in the Redis broker: LLEN of the list kombu pushes to for each priority step
    (priority 0 is the bare queue name, others ``<queue><sep><priority>``), exactly as kombu's ``_size``."""
    with current_app.connection_for_read() as conn:
        channel = conn.default_channel
        client = channel.client
        with client.pipeline() as pipe:
            for queue in queues:
                for pri in channel.priority_steps:
                    pipe.llen(f"{queue}{channel.sep}{pri}" if pri else queue)
            sizes = pipe.execute()
    steps = len(channel.priority_steps)
    return {queue: int(sum(sizes[i * steps : (i + 1) * steps])) for i, queue in enumerate(queues)}


@shared_task(name="apps.core.tasks.celery_queue_depth_publish")  # type: ignore[untyped-decorator]
def celery_queue_depth_publish(queues: list[str] | None = None) -> dict[str, int]:
    """Emit CeleryQueueDepth per queue (dimension Queue) and in total (no dimensions) as EMF lines."""
    depths = celery_queue_depths(queues if queues is not None else celery_queue_names())
    for queue, depth in depths.items():
        emf_emit(metrics={QUEUE_DEPTH_METRIC: depth}, dimensions={QUEUE_DIMENSION: queue})
    emf_emit(metrics={QUEUE_DEPTH_METRIC: sum(depths.values())}, dimensions={})
    return depths
