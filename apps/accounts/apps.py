from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _roles_sync_after_migrate(sender: AppConfig, **kwargs: Any) -> None:
    """Re-apply role permissions once every app's permissions exist (they are created after migrations)."""
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Group, Permission

    from apps.accounts.roles import roles_sync

    using = kwargs.get("using", "default")
    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using)
    roles_sync(group_model=Group, permission_model=Permission)


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"

    def ready(self) -> None:
        post_migrate.connect(_roles_sync_after_migrate, sender=self, dispatch_uid="accounts_roles_sync")
