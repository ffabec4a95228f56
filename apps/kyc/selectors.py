"""Reads of the kyc app (for its APIs, the admin and other apps)."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from apps.accounts.models import BrokerageAccount
from apps.core.errors import NotFound
from apps.kyc.models import ComplianceHold, KycApplication, SanctionsScreening, Transfer


def kyc_application_for_account(account: BrokerageAccount) -> KycApplication | None:
    return KycApplication.objects.filter(account=account).first()


def account_holds_active(account: BrokerageAccount) -> list[str]:
    """Kinds of the account's unreleased compliance holds (empty when none)."""
    return sorted(
        ComplianceHold.objects.filter(account=account, released_at__isnull=True).values_list(
            "kind", flat=True
        )
    )


def transfers_for_account(account: BrokerageAccount) -> QuerySet[Transfer]:
    return Transfer.objects.filter(account=account).order_by("-created_at", "-pk")


def transfer_for_account(account: BrokerageAccount, transfer_id: str) -> Transfer:
    """The account's own transfer; any other id (or a malformed one) is 404."""
    try:
        pk = uuid.UUID(transfer_id)
    except ValueError as exc:
        raise NotFound("transfer not found") from exc
    try:
        return Transfer.objects.get(account=account, pk=pk)
    except Transfer.DoesNotExist as exc:
        raise NotFound("transfer not found") from exc


def sanctions_review_queue() -> QuerySet[SanctionsScreening]:
    return SanctionsScreening.objects.filter(
        review__in=[SanctionsScreening.Review.OPEN, SanctionsScreening.Review.OVERRIDE_PENDING]
    ).order_by("screened_at")
