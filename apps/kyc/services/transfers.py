"""Funding: cash (ACH, wire) and share (ACATS) transfers, simulated network steps and four-eyes approval.

Lifecycle: ``APPROVAL_PENDING`` (large withdrawals) → ``QUEUED`` → ``PENDING`` → ``COMPLETE`` | ``RETURNED``; a
transfer may end ``REJECTED`` (refused by compliance or by the ledger) or ``CANCELED``.

Invariants:
- Money moves only through the ledger (``apps.settlement.services`` via ``apps.kyc.ports``), with the transfer id
  as the source id: withdrawals post when they leave (QUEUED → PENDING; the ledger allows only settled cash and
  refuses overdrafts), deposits post when they complete, a returned withdrawal is re-credited as
  ``<id>:return``. The ledger's unique source ids make a repeated post impossible.
- ``transfer_advance`` is a compare-and-set on the status, under the account lock then the transfer lock: running a
  step twice (a redelivered Celery task) changes nothing the second time.
- Withdrawals are refused while the account has any unreleased compliance hold; a freeze also refuses deposits.
- A withdrawal over ``TRANSFER_LARGE_WITHDRAWAL_AMOUNT`` needs two approvers, both different from the requester
  and from each other (enforced here and by a CHECK constraint).
- Every status change records an event on ``transfers.events`` (key = account id) and an audit record.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import BrokerageAccount
from apps.core.errors import BusinessRuleViolation, Conflict, InsufficientFunds, ValidationError
from apps.core.fields import format_decimal
from apps.core.outbox import event_record
from apps.kyc import ports
from apps.kyc.models import ComplianceHold, Transfer
from apps.kyc.services.aml import aml_transfer_evaluate, device_observe

SIMULATOR = "ach-simulator"
# The sandbox's test hook: an ACH whose cents are .66 is returned by the (simulated) receiving bank (R01).
RETURN_CENTS = Decimal("0.66")
Status = Transfer.Status


def large_withdrawal_amount() -> Decimal:
    return Decimal(str(settings.TRANSFER_LARGE_WITHDRAWAL_AMOUNT))


def transfer_payload(transfer: Transfer) -> dict[str, Any]:
    return {
        "transfer_id": str(transfer.pk),
        "account_id": str(transfer.account_id),
        "direction": transfer.direction,
        "type": transfer.type,
        "status": transfer.status,
        "amount": format_decimal(transfer.amount) if transfer.amount is not None else None,
        "symbol": transfer.symbol or None,
        "qty": format_decimal(transfer.qty) if transfer.qty is not None else None,
        "reason": transfer.reason,
    }


def _event(transfer: Transfer, event_type: str) -> None:
    event_record(
        topic="transfers.events",
        key=str(transfer.account_id),
        event_type=f"transfers.{event_type}",
        aggregate_type="transfer",
        aggregate_id=str(transfer.pk),
        payload=transfer_payload(transfer),
    )


def _holds(account: BrokerageAccount) -> list[str]:
    return sorted(
        ComplianceHold.objects.filter(account=account, released_at__isnull=True).values_list(
            "kind", flat=True
        )
    )


def _refuse_if_held(account: BrokerageAccount, direction: str) -> None:
    holds = _holds(account)
    if ComplianceHold.Kind.FREEZE in holds or (direction == Transfer.Direction.OUTGOING and holds):
        raise BusinessRuleViolation(
            "transfers are blocked while compliance holds the account",
            error="account_on_hold",
            rule="compliance_hold",
            details={"holds": holds},
        )


def transfer_create(
    *,
    account: BrokerageAccount,
    actor: Any,
    direction: str,
    type: str,
    amount: Decimal | None = None,
    symbol: str = "",
    qty: Decimal | None = None,
    cost_basis: Decimal | None = None,
    device_key: str = "",
    request: Any = None,
) -> Transfer:
    is_shares = type == Transfer.Type.ACATS
    if is_shares and (not symbol or qty is None or qty <= 0 or amount is not None):
        raise ValidationError("an acats transfer needs symbol and a positive qty, and no amount", field="qty")
    if not is_shares and (amount is None or amount <= 0 or qty is not None):
        raise ValidationError("a cash transfer needs a positive amount", field="amount")
    with transaction.atomic():
        account = BrokerageAccount.objects.select_for_update().get(pk=account.pk)
        if account.status != BrokerageAccount.Status.ACTIVE:
            raise BusinessRuleViolation(
                f"the account is {account.status}; transfers need an ACTIVE account",
                error="account_not_active",
                rule="account_active",
            )
        if account.transfers_blocked or account.account_blocked:
            raise BusinessRuleViolation("transfers are blocked on this account", error="transfers_blocked")
        _refuse_if_held(account, direction)
        requires_approval = False
        if direction == Transfer.Direction.OUTGOING and not is_shares:
            assert amount is not None
            withdrawable = ports.ledger_withdrawable(account)
            if amount > withdrawable:
                raise InsufficientFunds(
                    "withdrawals may take settled cash only",
                    rule="withdrawable_cash",
                    details={
                        "requested": format_decimal(amount),
                        "withdrawable": format_decimal(withdrawable),
                    },
                )
            requires_approval = amount > large_withdrawal_amount()
        transfer = Transfer.objects.create(
            account=account,
            direction=direction,
            type=type,
            status=Status.APPROVAL_PENDING if requires_approval else Status.QUEUED,
            amount=amount,
            symbol=symbol.upper(),
            qty=qty,
            cost_basis=cost_basis,
            requested_by=actor,
            requires_approval=requires_approval,
        )
        if device_key:
            device_observe(account=account, device_key=device_key)
        ports.audit(
            actor=actor, action="transfers.requested", target=transfer, before=None,
            after=transfer_payload(transfer), request=request,
        )  # fmt: skip
        _event(transfer, "TransferRequested" if requires_approval else "TransferQueued")
        return transfer


def transfer_approve(*, transfer: Transfer, approver: Any, request: Any = None) -> Transfer:
    """One of the two approvals a large withdrawal needs; the second one queues it."""
    with transaction.atomic():
        BrokerageAccount.objects.select_for_update().get(pk=transfer.account_id)
        transfer = Transfer.objects.select_for_update().get(pk=transfer.pk)
        if transfer.status != Status.APPROVAL_PENDING:
            raise Conflict(f"the transfer is {transfer.status}, not awaiting approval")
        if approver.pk == transfer.requested_by_id or approver.pk == transfer.first_approver_id:
            raise BusinessRuleViolation(
                "approvers must differ from the requester and from each other",
                error="four_eyes_violation",
                rule="four_eyes_withdrawal",
            )
        before = transfer_payload(transfer)
        if transfer.first_approver_id is None:
            transfer.first_approver = approver
            transfer.save(update_fields=["first_approver", "updated_at"])
            action = "transfers.first_approval"
        else:
            transfer.second_approver = approver
            transfer.status = Status.QUEUED
            transfer.save(update_fields=["second_approver", "status", "updated_at"])
            action = "transfers.approved"
            _event(transfer, "TransferQueued")
        ports.audit(
            actor=approver, action=action, target=transfer, before=before,
            after={**transfer_payload(transfer), "approver": str(approver.pk)}, request=request,
        )  # fmt: skip
        return transfer


def transfer_reject(*, transfer: Transfer, actor: Any, reason: str, request: Any = None) -> Transfer:
    with transaction.atomic():
        BrokerageAccount.objects.select_for_update().get(pk=transfer.account_id)
        transfer = Transfer.objects.select_for_update().get(pk=transfer.pk)
        if transfer.status not in (Status.APPROVAL_PENDING, Status.QUEUED):
            raise Conflict(f"a {transfer.status} transfer cannot be rejected")
        before = transfer_payload(transfer)
        transfer.status = Status.REJECTED
        transfer.reason = reason[:200]
        transfer.save(update_fields=["status", "reason", "updated_at"])
        ports.audit(actor=actor, action="transfers.rejected", target=transfer, before=before,
                    after=transfer_payload(transfer), request=request)  # fmt: skip
        _event(transfer, "TransferRejected")
        return transfer


def simulated_outcome(transfer: Transfer) -> str:
    """COMPLETE, or RETURNED for an ACH whose cents are .66 (deterministic, so demos and tests can ask for it)."""
    if (
        transfer.type == Transfer.Type.ACH
        and transfer.amount is not None
        and transfer.amount % 1 == RETURN_CENTS
    ):
        return Status.RETURNED
    return Status.COMPLETE


def _leave(transfer: Transfer, account: BrokerageAccount) -> None:
    """QUEUED → PENDING: an outgoing transfer debits the ledger now (or is rejected)."""
    if transfer.direction == Transfer.Direction.OUTGOING:
        holds = _holds(account)
        if holds:
            transfer.status = Status.REJECTED
            transfer.reason = f"compliance hold: {', '.join(holds)}"
            return
        try:
            with transaction.atomic():
                if transfer.type == Transfer.Type.ACATS:
                    assert transfer.qty is not None
                    ports.ledger_shares_withdrawal(
                        account=account,
                        symbol=transfer.symbol,
                        qty=transfer.qty,
                        transfer_id=str(transfer.pk),
                    )
                else:
                    assert transfer.amount is not None
                    ports.ledger_cash_withdrawal(
                        account=account, amount=transfer.amount, transfer_id=str(transfer.pk)
                    )
        except BusinessRuleViolation as exc:
            transfer.status = Status.REJECTED
            transfer.reason = exc.message[:200]
            return
        transfer.ledger_posted = True
    transfer.status = Status.PENDING


def _finish(transfer: Transfer, account: BrokerageAccount) -> None:
    """PENDING → COMPLETE | RETURNED."""
    outcome = simulated_outcome(transfer)
    pk = str(transfer.pk)
    if outcome == Status.COMPLETE and transfer.direction == Transfer.Direction.INCOMING:
        if transfer.type == Transfer.Type.ACATS:
            assert transfer.qty is not None
            ports.ledger_shares_deposit(
                account=account, symbol=transfer.symbol, qty=transfer.qty,
                cost_basis=transfer.cost_basis if transfer.cost_basis is not None else Decimal(0), transfer_id=pk,
            )  # fmt: skip
        else:
            assert transfer.amount is not None
            ports.ledger_cash_deposit(
                account=account,
                amount=transfer.amount,
                transfer_id=pk,
                description=f"{transfer.type} deposit",
            )
        transfer.ledger_posted = True
    if outcome == Status.RETURNED:
        transfer.reason = "R01 insufficient funds (simulated return)"
        if transfer.direction == Transfer.Direction.OUTGOING and transfer.ledger_posted:
            assert transfer.amount is not None
            ports.ledger_cash_deposit(
                account=account,
                amount=transfer.amount,
                transfer_id=f"{pk}:return",
                description="returned withdrawal",
            )
    transfer.status = outcome
    transfer.completed_at = timezone.now()


def transfer_advance(*, transfer_id: str, from_status: str) -> Transfer:
    """Take one simulated network step from ``from_status``; a no-op when the transfer has moved on."""
    with transaction.atomic():
        account_id = Transfer.objects.values_list("account_id", flat=True).get(pk=transfer_id)
        account = BrokerageAccount.objects.select_for_update().get(pk=account_id)
        transfer = Transfer.objects.select_for_update().get(pk=transfer_id)
        if transfer.status != from_status:
            return transfer
        before = transfer_payload(transfer)
        if from_status == Status.QUEUED:
            _leave(transfer, account)
        elif from_status == Status.PENDING:
            _finish(transfer, account)
        else:
            raise ValueError(f"no simulated step from {from_status}")
        transfer.save(update_fields=["status", "reason", "ledger_posted", "completed_at", "updated_at"])
        ports.audit(actor=SIMULATOR, action=f"transfers.{transfer.status.lower()}", target=transfer, before=before,
                    after=transfer_payload(transfer))  # fmt: skip
        _event(transfer, f"Transfer{transfer.status.title().replace('_', '')}")
        if transfer.status == Status.COMPLETE:
            aml_transfer_evaluate(transfer=transfer)
        return transfer
