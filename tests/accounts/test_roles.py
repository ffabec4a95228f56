"""Roles are Django groups created by migration, with the permissions their job needs and no more."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from apps.accounts.roles import ROLE_NAMES

pytestmark = pytest.mark.django_db


def _codenames(role: str) -> set[str]:
    return set(Group.objects.get(name=role).permissions.values_list("codename", flat=True))


def test_every_role_exists() -> None:
    assert set(Group.objects.filter(name__in=ROLE_NAMES).values_list("name", flat=True)) == set(ROLE_NAMES)


def test_support_is_read_only() -> None:
    perms = _codenames("support")
    assert "view_brokerageaccount" in perms
    assert "view_auditrecord" in perms
    assert all(p.startswith("view_") for p in perms)


def test_customer_has_no_back_office_permissions() -> None:
    assert _codenames("customer") == set()


def test_operations_can_change_accounts_but_not_users() -> None:
    perms = _codenames("operations")
    assert "change_brokerageaccount" in perms
    assert "change_user" not in perms


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_nobody_may_change_or_delete_audit_records(role: str) -> None:
    assert not {"change_auditrecord", "delete_auditrecord"} & _codenames(role)


def test_administrator_has_user_and_group_management() -> None:
    perms = _codenames("administrator")
    assert {"change_user", "change_group", "view_auditrecord"} <= perms
