"""Funding against the real stack: /v1/transfers, the simulated ACH steps, the ledger, holds, four eyes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import BrokerageAccount
from apps.core.models import StoredEvent
from apps.kyc.models import Transfer
from apps.kyc.services.holds import account_freeze, hold_place
from apps.kyc.services.transfers import transfer_advance, transfer_approve
from apps.kyc.tasks import transfer_step
from apps.settlement.selectors import cash_balances
from tests.kyc.factories import application_payload, make_account, make_staff

pytestmark = pytest.mark.django_db
URL = "/v1/transfers"
Q, P = Transfer.Status.QUEUED, Transfer.Status.PENDING


@pytest.fixture
def account(api: APIClient) -> BrokerageAccount:
    account = make_account(status=BrokerageAccount.Status.ACTIVE)
    api.force_authenticate(user=account.owner)
    return account


def _post(api: APIClient, body: dict[str, Any], key: str | None = None) -> Any:
    return api.post(URL, body, format="json", headers={"Idempotency-Key": key} if key else None)


def _run(transfer_id: str) -> str:
    """Drive the simulated network explicitly (what the Celery chain does with delays)."""
    transfer_step(transfer_id, Q)
    return str(transfer_step(transfer_id, P))


def _deposit(api: APIClient, amount: str) -> str:
    response = _post(api, {"direction": "INCOMING", "amount": amount, "type": "ach"})
    assert response.status_code == 200, response.json()
    transfer_id: str = response.json()["id"]
    assert _run(transfer_id) == "COMPLETE"
    return transfer_id


def test_end_to_end_register_kyc_deposit_ledger(api: APIClient) -> None:
    account = make_account()
    api.force_authenticate(user=account.owner)
    assert (
        api.post("/v1/accounts/kyc", application_payload(), format="json").json()["account_status"]
        == "ACTIVE"
    )
    body = _post(api, {"direction": "INCOMING", "amount": "2500.00", "type": "ach"}, key="dep-1").json()
    assert (body["status"], body["amount"], body["direction"], body["type"]) == (
        "QUEUED",
        "2500",
        "INCOMING",
        "ach",
    )
    assert transfer_step(body["id"], Q) == "PENDING"
    assert cash_balances(account).settled == Decimal(0)  # nothing posts before the money arrives
    assert transfer_step(body["id"], P) == "COMPLETE"
    assert cash_balances(account).settled == Decimal("2500")
    assert api.get(f"{URL}/{body['id']}").json()["status"] == "COMPLETE"
    events = list(
        StoredEvent.objects.filter(topic="transfers.events", aggregate_id=body["id"])
        .order_by("sequence")
        .values_list("event_type", flat=True)
    )
    assert events == ["transfers.TransferQueued", "transfers.TransferPending", "transfers.TransferComplete"]


def test_steps_are_idempotent(api: APIClient, account: BrokerageAccount) -> None:
    transfer_id = _deposit(api, "100")
    assert _run(transfer_id) == "COMPLETE"  # a redelivered chain changes nothing
    assert transfer_advance(transfer_id=transfer_id, from_status=P).status == "COMPLETE"
    assert cash_balances(account).settled == Decimal("100")


def test_idempotency_key_replays_without_a_second_transfer(api: APIClient, account: BrokerageAccount) -> None:
    first = _post(api, {"direction": "INCOMING", "amount": "50", "type": "wire"}, key="k1")
    second = _post(api, {"direction": "INCOMING", "amount": "50", "type": "wire"}, key="k1")
    assert first.json() == second.json()
    assert Transfer.objects.filter(account=account).count() == 1
    reused = _post(api, {"direction": "INCOMING", "amount": "51", "type": "wire"}, key="k1")
    assert (reused.status_code, reused.json()["error"]) == (422, "idempotency_key_reused")


def test_returned_ach_posts_nothing(api: APIClient, account: BrokerageAccount) -> None:
    transfer_id = _post(api, {"direction": "INCOMING", "amount": "300.66", "type": "ach"}).json()["id"]
    assert _run(transfer_id) == "RETURNED"
    assert cash_balances(account).settled == Decimal(0)


def test_withdrawal_from_settled_cash(api: APIClient, account: BrokerageAccount) -> None:
    _deposit(api, "1000")
    transfer_id = _post(api, {"direction": "OUTGOING", "amount": "400", "type": "ach"}).json()["id"]
    assert transfer_step(transfer_id, Q) == "PENDING"
    assert cash_balances(account).settled == Decimal("600")  # debited when it leaves
    assert transfer_step(transfer_id, P) == "COMPLETE"
    assert cash_balances(account).settled == Decimal("600")


def test_withdrawal_over_settled_cash_is_refused(api: APIClient, account: BrokerageAccount) -> None:
    _deposit(api, "100")
    response = _post(api, {"direction": "OUTGOING", "amount": "100.01", "type": "ach"})
    assert (response.status_code, response.json()["error"]) == (403, "insufficient_buying_power")
    assert response.json()["details"] == {"requested": "100.01", "withdrawable": "100"}
    assert Transfer.objects.filter(account=account, direction="OUTGOING").count() == 0


@pytest.mark.parametrize(
    ("kind", "direction", "refused"),
    [
        pytest.param("kyc", "OUTGOING", True, id="kyc-hold-blocks-withdrawal"),
        pytest.param("aml", "OUTGOING", True, id="aml-hold-blocks-withdrawal"),
        pytest.param("aml", "INCOMING", False, id="aml-hold-allows-deposit"),
    ],
)
def test_holds_block_withdrawals(
    api: APIClient, account: BrokerageAccount, kind: str, direction: str, refused: bool
) -> None:
    _deposit(api, "500")
    hold_place(account=account, kind=kind, reason="test", actor="test")
    response = _post(api, {"direction": direction, "amount": "10", "type": "ach"})
    if refused:
        assert (response.status_code, response.json()["error"]) == (403, "account_on_hold")
        assert response.json()["details"] == {"holds": [kind]}
    else:
        assert response.status_code == 200


def test_freeze_blocks_both_directions_and_trading(api: APIClient, account: BrokerageAccount) -> None:
    officer = make_staff()
    account_freeze(account=account, actor=officer, reason="investigation")
    account.refresh_from_db()
    assert (account.trading_blocked, account.transfers_blocked) == (True, True)
    response = _post(api, {"direction": "INCOMING", "amount": "10", "type": "ach"})
    assert (response.status_code, response.json()["error"]) == (403, "transfers_blocked")


def test_hold_placed_after_request_rejects_withdrawal_at_send_time(
    api: APIClient, account: BrokerageAccount
) -> None:
    _deposit(api, "500")
    transfer_id = _post(api, {"direction": "OUTGOING", "amount": "100", "type": "ach"}).json()["id"]
    hold_place(account=account, kind="aml", reason="alert", actor="test")
    assert transfer_step(transfer_id, Q) == "REJECTED"
    assert cash_balances(account).settled == Decimal("500")


def test_large_withdrawal_needs_two_distinct_approvers(
    api: APIClient, account: BrokerageAccount, settings: Any
) -> None:
    settings.TRANSFER_LARGE_WITHDRAWAL_AMOUNT = "1000"
    _deposit(api, "5000")
    body = _post(api, {"direction": "OUTGOING", "amount": "1500", "type": "wire"}).json()
    assert (body["status"], body["requires_approval"]) == ("APPROVAL_PENDING", True)
    transfer = Transfer.objects.get(pk=body["id"])
    assert transfer_step(body["id"], Q) == "APPROVAL_PENDING"  # the simulator cannot bypass approval
    first, second = make_staff(), make_staff()
    with pytest.raises(Exception, match="approvers must differ"):
        transfer_approve(transfer=transfer, approver=account.owner)
    transfer_approve(transfer=transfer, approver=first)
    with pytest.raises(Exception, match="approvers must differ"):
        transfer_approve(transfer=transfer, approver=first)
    assert transfer_approve(transfer=transfer, approver=second).status == "QUEUED"
    assert _run(body["id"]) == "COMPLETE"
    assert cash_balances(account).settled == Decimal("3500")


def test_small_withdrawal_needs_no_approval(api: APIClient, account: BrokerageAccount, settings: Any) -> None:
    settings.TRANSFER_LARGE_WITHDRAWAL_AMOUNT = "1000"
    _deposit(api, "5000")
    assert _post(api, {"direction": "OUTGOING", "amount": "1000", "type": "ach"}).json()["status"] == "QUEUED"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"direction": "INCOMING", "amount": "1e3", "type": "ach"}, "amount", id="exponent"),
        pytest.param({"direction": "INCOMING", "amount": "10.001", "type": "ach"}, "amount", id="sub-cent"),
        pytest.param({"direction": "INCOMING", "amount": "-5", "type": "ach"}, "amount", id="negative"),
        pytest.param({"direction": "INCOMING", "qty": "5", "type": "ach"}, "amount", id="ach-with-qty"),
        pytest.param(
            {"direction": "INCOMING", "amount": "5", "type": "acats"}, "qty", id="acats-with-amount"
        ),
        pytest.param(
            {"direction": "SIDEWAYS", "amount": "5", "type": "ach"}, "direction", id="bad-direction"
        ),
    ],
)
def test_invalid_transfer_bodies(
    api: APIClient, account: BrokerageAccount, body: dict[str, Any], field: str
) -> None:
    response = _post(api, body)
    assert (response.status_code, response.json()["field"]) == (422, field)
    assert Transfer.objects.count() == 0


def test_inactive_account_cannot_transfer(api: APIClient) -> None:
    account = make_account()  # ONBOARDING
    api.force_authenticate(user=account.owner)
    response = _post(api, {"direction": "INCOMING", "amount": "10", "type": "ach"})
    assert (response.status_code, response.json()["error"]) == (403, "account_not_active")


def test_customer_sees_only_own_transfers(api: APIClient, account: BrokerageAccount) -> None:
    transfer_id = _deposit(api, "10")
    assert [t["id"] for t in api.get(URL).json()] == [transfer_id]
    other = make_account(status=BrokerageAccount.Status.ACTIVE)
    api.force_authenticate(user=other.owner)
    assert api.get(URL).json() == []
    assert api.get(f"{URL}/{transfer_id}").status_code == 404
    assert api.get(f"{URL}/not-a-uuid").status_code == 404


def test_acats_shares_in_and_out(api: APIClient, account: BrokerageAccount) -> None:
    from apps.settlement.selectors import position

    body = _post(
        api, {"direction": "INCOMING", "symbol": "AAPL", "qty": "10", "cost_basis": "1500", "type": "acats"}
    ).json()
    assert (body["status"], body["qty"], body["amount"]) == ("QUEUED", "10", None)
    assert _run(body["id"]) == "COMPLETE"
    held = position(account, "AAPL")
    assert held is not None
    assert held.qty == Decimal(10)
    out = _post(api, {"direction": "OUTGOING", "symbol": "AAPL", "qty": "4", "type": "acats"}).json()
    assert _run(out["id"]) == "COMPLETE"
    after = position(account, "AAPL")
    assert after is not None
    assert after.qty == Decimal(6)
    too_many = _post(api, {"direction": "OUTGOING", "symbol": "AAPL", "qty": "7", "type": "acats"}).json()
    assert (
        transfer_step(too_many["id"], Q) == "REJECTED"
    )  # the ledger refuses shares the account does not hold


def test_bridge_consumer_enqueues_the_step_chain_on_commit(
    api: APIClient, account: BrokerageAccount, redis_client: Any, settings: Any
) -> None:
    """The ``kyc.transfers`` handler enqueues the Celery chain (to the real Redis broker) only after commit."""
    import redis as redis_lib

    from apps.core import events
    from apps.core.consumers import MessageMeta, consumer_get, inbox_apply

    broker = redis_lib.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("compliance")
    body = _post(api, {"direction": "INCOMING", "amount": "10", "type": "ach"}).json()
    stored = StoredEvent.objects.get(aggregate_id=body["id"], event_type="transfers.TransferQueued")
    envelope = events.decode(bytes(stored.body))
    spec = consumer_get("kyc.transfers")
    meta = MessageMeta(topic="transfers.events", partition=0, offset=1, key=None)
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True) as callbacks:
        assert inbox_apply(spec, envelope, meta) is True
    assert len(callbacks) == 1
    assert broker.llen("compliance") == 1  # the chain's first step, routed to the compliance queue
    assert inbox_apply(spec, envelope, meta) is False  # a redelivered event enqueues nothing more
    assert broker.llen("compliance") == 1
    broker.delete("compliance")
    broker.close()
