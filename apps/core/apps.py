from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Shared kernel: event envelope, outbox/inbox, Kafka plumbing, idempotency, errors, health."""

    name = "apps.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from apps.core import pgarrays

        pgarrays.register()  # before any database connection is made
        # Every app declares its Kafka consumers in a ``consumers`` module; import them into the one registry.
        from django.utils.module_loading import autodiscover_modules

        autodiscover_modules("consumers")
