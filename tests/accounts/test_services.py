"""Brokerage account services and selectors: open, status lifecycle, blocks, kill switch, trading check."""

from __future__ import annotations

import pytest

from apps.accounts import selectors, services
from apps.accounts.models import AuditRecord, BrokerageAccount
from apps.core.errors import BusinessRuleViolation, Conflict, NotFound
from apps.core.models import StoredEvent
from tests.accounts.factories import make_account, make_user

pytestmark = pytest.mark.django_db
Status = BrokerageAccount.Status


def _active() -> BrokerageAccount:
    return make_account(status=Status.ACTIVE)


def test_account_open_allocates_unique_numbers_and_refuses_a_second_account() -> None:
    users = [make_user() for _ in range(3)]
    accounts = [services.account_open(user=u) for u in users]
    assert len({a.account_number for a in accounts}) == 3
    assert {a.status for a in accounts} == {Status.ONBOARDING}
    with pytest.raises(Conflict):
        services.account_open(user=users[0])
    assert BrokerageAccount.objects.filter(owner=users[0]).count() == 1


def test_account_for_user() -> None:
    account = _active()
    assert selectors.account_for_user(account.owner) == account
    with pytest.raises(NotFound):
        selectors.account_for_user(make_user())


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        pytest.param({"status": Status.APPROVED}, "account_not_active", id="not-active"),
        pytest.param({"trading_blocked": True}, "trading_blocked", id="trading-blocked"),
        pytest.param({"account_blocked": True}, "trading_blocked", id="account-blocked"),
        pytest.param({"trading_halted_reason": "recon break"}, "trading_halted", id="halted"),
    ],
)
def test_trading_check_refusals(changes: dict[str, object], error: str) -> None:
    account = make_account(**{"status": Status.ACTIVE, **changes})
    with pytest.raises(BusinessRuleViolation) as info:
        selectors.account_trading_check(account)
    assert info.value.error == error


def test_trading_check_passes_for_active_unblocked_account() -> None:
    selectors.account_trading_check(_active())


def test_status_set_is_audited_with_event_and_refuses_forbidden_transitions() -> None:
    account = make_account(status=Status.APPROVED)
    actor = make_user(is_staff=True)
    updated = services.account_status_set(account=account, status=Status.ACTIVE, actor=actor, reason="kyc ok")
    assert updated.status == Status.ACTIVE
    audit = AuditRecord.objects.get(action="account.status_changed")
    assert audit.before is not None
    assert audit.after is not None
    assert audit.before["status"] == "APPROVED"
    assert audit.after["status"] == "ACTIVE"
    assert audit.actor_id == str(actor.pk)
    events = StoredEvent.objects.filter(aggregate_id=str(account.pk), event_type="AccountStatusChanged")
    assert events.count() == 1
    services.account_status_set(account=account, status=Status.ACCOUNT_CLOSED, actor=actor)
    with pytest.raises(Conflict) as info:
        services.account_status_set(account=account, status=Status.ACTIVE, actor=actor)
    assert info.value.error == "invalid_status_transition"
    account.refresh_from_db()
    assert account.status == Status.ACCOUNT_CLOSED


def test_setting_the_same_status_changes_and_audits_nothing() -> None:
    account = _active()
    services.account_status_set(account=account, status=Status.ACTIVE, actor=None)
    assert AuditRecord.objects.count() == 0


def test_kill_switch_halts_and_resumes() -> None:
    account = _active()
    services.account_trading_halt(account=account, reason="reconciliation break", actor="reconciliation")
    account.refresh_from_db()
    with pytest.raises(BusinessRuleViolation) as info:
        selectors.account_trading_check(account)
    assert info.value.details == {"reason": "reconciliation break"}
    services.account_trading_resume(account=account, actor="operations")
    account.refresh_from_db()
    selectors.account_trading_check(account)
    actions = list(AuditRecord.objects.order_by("seq").values_list("action", "actor_label"))
    assert actions == [
        ("account.trading_halted", "reconciliation"),
        ("account.trading_resumed", "operations"),
    ]


def test_blocks_set_only_changes_what_is_given() -> None:
    account = _active()
    services.account_blocks_set(account=account, actor=None, reason="aml hold", transfers_blocked=True)
    account.refresh_from_db()
    assert (account.trading_blocked, account.transfers_blocked, account.account_blocked) == (
        False,
        True,
        False,
    )
