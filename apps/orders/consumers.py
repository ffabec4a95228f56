"""Kafka consumers of the orders app (autodiscovered): the projection of the engine's events."""

from apps.core.consumers import ConsumerSpec, consumer_register
from apps.orders.projection import _HANDLERS, engine_event_apply, engine_events_apply

ORDERS_PROJECTION = consumer_register(
    ConsumerSpec(
        name="orders.projection",
        topics=("orders.events",),
        handler=engine_event_apply,
        mode="inline",
        # Throughput (docs/PERFORMANCE.md, Pipeline): skip the events the projection ignores (TradeExecuted,
        # book and session changes) and apply up to 100 events per transaction, each still once by event id,
        # set-based: the chunk's orders locked once, its rows written in bulk, one push per commit.
        event_types=frozenset(_HANDLERS),
        transaction_batch=100,
        chunk_handler=engine_events_apply,
    )
)
