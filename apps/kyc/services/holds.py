"""Compliance holds (KYC re-screen hits, AML, manual freeze). An unreleased hold blocks withdrawals.

At most one unreleased hold per (account, kind) (a partial unique constraint); placing and releasing are audited.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.accounts.models import BrokerageAccount
from apps.core.errors import Conflict
from apps.core.outbox import event_record
from apps.kyc import ports
from apps.kyc.models import ComplianceHold


def hold_place(
    *,
    account: BrokerageAccount,
    kind: str,
    reason: str,
    actor: Any,
    request: Any = None,
    exists_ok: bool = False,
) -> ComplianceHold:
    with transaction.atomic():
        BrokerageAccount.objects.select_for_update().get(pk=account.pk)
        existing = ComplianceHold.objects.filter(account=account, kind=kind, released_at__isnull=True).first()
        if existing is not None:
            if exists_ok:
                return existing
            raise Conflict(f"the account already has an active {kind} hold", error="hold_exists")
        hold = ComplianceHold.objects.create(
            account=account,
            kind=kind,
            reason=reason,
            created_by=actor if not isinstance(actor, str) else None,
        )
        ports.audit(
            actor=actor, action=f"compliance.hold_placed.{kind}", target=account, before=None,
            after={"kind": kind, "reason": reason, "hold_id": hold.pk}, request=request,
        )  # fmt: skip
        event_record(
            topic="accounts.events", key=str(account.pk), event_type="compliance.HoldPlaced",
            aggregate_type="brokerage_account", aggregate_id=str(account.pk),
            payload={"account_id": str(account.pk), "kind": kind, "reason": reason},
        )  # fmt: skip
        return hold


def hold_release(
    *, account: BrokerageAccount, kind: str, actor: Any, request: Any = None, missing_ok: bool = False
) -> ComplianceHold | None:
    with transaction.atomic():
        BrokerageAccount.objects.select_for_update().get(pk=account.pk)
        hold = ComplianceHold.objects.filter(account=account, kind=kind, released_at__isnull=True).first()
        if hold is None:
            if missing_ok:
                return None
            raise Conflict(f"the account has no active {kind} hold", error="hold_missing")
        hold.released_at = timezone.now()
        hold.released_by = actor if not isinstance(actor, str) else None
        hold.save(update_fields=["released_at", "released_by"])
        ports.audit(
            actor=actor, action=f"compliance.hold_released.{kind}", target=account,
            before={"kind": kind, "hold_id": hold.pk}, after=None, request=request,
        )  # fmt: skip
        event_record(
            topic="accounts.events", key=str(account.pk), event_type="compliance.HoldReleased",
            aggregate_type="brokerage_account", aggregate_id=str(account.pk),
            payload={"account_id": str(account.pk), "kind": kind},
        )  # fmt: skip
        return hold


def account_freeze(
    *, account: BrokerageAccount, actor: Any, reason: str, request: Any = None
) -> ComplianceHold:
    """Freeze: a FREEZE hold (no transfers either way) plus trading and transfer blocks on the account."""
    with transaction.atomic():
        hold = hold_place(
            account=account, kind=ComplianceHold.Kind.FREEZE, reason=reason, actor=actor, request=request
        )
        ports.account_blocks_change(
            account=account, actor=actor, reason=f"frozen: {reason}", blocked=True, request=request
        )
        return hold


def account_unfreeze(
    *, account: BrokerageAccount, actor: Any, reason: str = "", request: Any = None
) -> ComplianceHold | None:
    """Release the FREEZE hold and lift the trading and transfer blocks."""
    with transaction.atomic():
        hold = hold_release(account=account, kind=ComplianceHold.Kind.FREEZE, actor=actor, request=request)
        ports.account_blocks_change(
            account=account, actor=actor, reason=f"unfrozen {reason}".strip(), blocked=False, request=request
        )
        return hold
