"""Staff and customer roles as Django groups, and which model permissions each one holds.

The spec is data, applied by ``roles_sync`` (a data migration creates the groups; ``manage.py roles_sync`` and
the accounts app's post-migrate hook re-apply it once every app's permissions exist). Invariant: no role ever
holds ``change_auditrecord`` or ``delete_auditrecord`` (the audit trail is append-only).
Customers reach their own objects through the API only; they hold no admin permissions.
"""

from __future__ import annotations

from typing import Any

CUSTOMER = "customer"
COMPLIANCE_OFFICER = "compliance_officer"
OPERATIONS = "operations"
SUPPORT = "support"
ADMINISTRATOR = "administrator"

ROLE_NAMES: tuple[str, ...] = (CUSTOMER, COMPLIANCE_OFFICER, OPERATIONS, SUPPORT, ADMINISTRATOR)

# Apps whose models staff may look at in the back office.
BUSINESS_APPS: tuple[str, ...] = ("accounts", "kyc", "orders", "settlement", "marketdata")

# role -> list of (app_label or "*", action or "*"); action is the permission codename prefix.
ROLE_PERMISSIONS: dict[str, list[tuple[str, str]]] = {
    CUSTOMER: [],
    SUPPORT: [(app, "view") for app in BUSINESS_APPS],
    COMPLIANCE_OFFICER: [(app, "view") for app in BUSINESS_APPS]
    + [("kyc", "add"), ("kyc", "change"), ("accounts.brokerageaccount", "change")],
    OPERATIONS: [(app, "view") for app in BUSINESS_APPS]
    + [("accounts.brokerageaccount", "change"), ("orders", "change"), ("settlement", "change")],
    ADMINISTRATOR: [("*", "*")],
}

FORBIDDEN_CODENAMES: frozenset[str] = frozenset({"change_auditrecord", "delete_auditrecord"})


def _matches(rule: tuple[str, str], app_label: str, model: str, codename: str) -> bool:
    target, action = rule
    if target != "*":
        app, _, model_name = target.partition(".")
        if app != app_label or (model_name and model_name != model):
            return False
    return action == "*" or codename.startswith(f"{action}_")


def roles_sync(*, group_model: Any, permission_model: Any) -> None:
    """Create the role groups and set exactly the permissions the spec gives them (idempotent).

    Takes the models as arguments so a migration can pass its historical ones.
    """
    permissions = list(permission_model.objects.select_related("content_type").order_by("pk"))
    for role in ROLE_NAMES:
        group, _ = group_model.objects.get_or_create(name=role)
        rules = ROLE_PERMISSIONS[role]
        wanted = [
            p.pk
            for p in permissions
            if p.codename not in FORBIDDEN_CODENAMES
            and any(_matches(r, p.content_type.app_label, p.content_type.model, p.codename) for r in rules)
        ]
        group.permissions.set(wanted)
