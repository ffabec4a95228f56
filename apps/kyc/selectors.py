"""Reads of the kyc app (for its APIs, the admin and other apps)."""

from __future__ import annotations

import hashlib
import uuid

from django.db.models import QuerySet

from apps.accounts.models import BrokerageAccount
from apps.core.errors import NotFound
from apps.kyc.fields import decrypt_bytes
from apps.kyc.models import ComplianceHold, KycApplication, KycDocument, SanctionsScreening, Transfer

# Who may read identity documents in the back office: compliance officers and administrators (the role
# permission); support and operations staff may see that a document exists, never its content.
DOCUMENT_VIEW_PERMISSION = "kyc.change_kycapplication"


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


def kyc_document_content(*, document: KycDocument) -> bytes:
    """The decrypted bytes of an identity document, checked against the digest taken at upload.

    Files stored before encryption at rest (no ``.enc`` suffix) are returned as stored, after the same check.
    Raises ``ValueError`` when the content does not decrypt or does not match its digest (never returns it).
    """
    with document.file.open("rb") as fh:
        stored = fh.read()
    content = decrypt_bytes(stored) if (document.file.name or "").endswith(".enc") else stored
    if hashlib.sha256(content).hexdigest() != document.sha256:
        raise ValueError(f"document {document.pk} does not match its upload digest")
    return content
