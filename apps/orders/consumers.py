"""Kafka consumers of the orders app (autodiscovered): the projection of the engine's events."""

from apps.core.consumers import ConsumerSpec, consumer_register
from apps.orders.projection import engine_event_apply

ORDERS_PROJECTION = consumer_register(
    ConsumerSpec(
        name="orders.projection",
        topics=("orders.events",),
        handler=engine_event_apply,
        mode="inline",
    )
)
