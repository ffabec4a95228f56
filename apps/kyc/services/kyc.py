"""KYC/CIP writes: saving an application, the automated checks and decision, compliance review, re-screening.

Invariants:
- Every write runs inside the caller's transaction (``transaction.atomic()``; the API/admin/task opens the durable
  one) and locks the brokerage account row first, so two submissions for one account serialize.
- Only an INCOMPLETE or ACTION_REQUIRED application can be changed by the customer; a decided or queued one
  answers 409.
- An application is auto-approved only when every check passes and the sanctions screen is clear and no PEP is
  disclosed; otherwise a person decides. A possible sanctions match can only be cleared by two different officers
  (``sanctions_override_request`` then ``sanctions_override_confirm``).
- Every state change writes an audit record and an event (topic ``accounts.events``, key = account id).
"""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import BrokerageAccount
from apps.core.errors import BusinessRuleViolation, Conflict, ValidationError
from apps.core.markettime_config import market_clock
from apps.core.outbox import event_record
from apps.kyc import checks, ports, screening
from apps.kyc.documents import ALLOWED_TYPES, EXTENSIONS, sniff_content_type
from apps.kyc.fields import encrypt_bytes, identifier_digest
from apps.kyc.models import ComplianceHold, KycAgreement, KycApplication, KycDocument, SanctionsScreening
from apps.kyc.sanctions import MATCHER_VERSION
from apps.kyc.services.holds import hold_place, hold_release

NEW_YORK = ZoneInfo("America/New_York")
EDITABLE = frozenset({KycApplication.Status.INCOMPLETE, KycApplication.Status.ACTION_REQUIRED})
_SECTION_FIELDS = {
    "contact": (
        "email_address",
        "phone_number",
        "street_address",
        "unit",
        "city",
        "state",
        "postal_code",
        "country",
    ),
    "identity": (
        "given_name",
        "middle_name",
        "family_name",
        "date_of_birth",
        "tax_id",
        "tax_id_type",
        "country_of_citizenship",
        "country_of_birth",
        "country_of_tax_residence",
        "funding_source",
    ),
    "disclosures": (
        "is_control_person",
        "is_affiliated_exchange_or_finra",
        "is_politically_exposed",
        "immediate_family_exposed",
    ),
}


def _event(application: KycApplication, event_type: str, payload: dict[str, Any]) -> None:
    event_record(
        topic="accounts.events",
        key=str(application.account_id),
        event_type=f"kyc.{event_type}",
        aggregate_type="kyc_application",
        aggregate_id=str(application.pk),
        payload={"application_id": str(application.pk), "account_id": str(application.account_id), **payload},
    )


def _snapshot(application: KycApplication) -> dict[str, Any]:
    # What the audit trail keeps: never the tax id itself.
    return {
        "status": application.status,
        "given_name": application.given_name,
        "family_name": application.family_name,
        "date_of_birth": application.date_of_birth.isoformat() if application.date_of_birth else None,
        "tax_id": application.tax_id_masked,
        "country": application.country,
        "review_reasons": list(application.review_reasons),
    }


def address_key(street: list[str], unit: str, city: str, postal_code: str, country: str) -> str:
    """A normalized residence address, equal for the same place written differently (for AML linking)."""
    text = " ".join([*street, unit, city, postal_code, country])
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().casefold()
    return re.sub(r"[^a-z0-9]+", " ", text).strip()[:300]


def today_market_date() -> date:
    """Today's date in New York by the platform's market clock (the date CIP age checks use)."""
    return market_clock().now().astimezone(NEW_YORK).date()


@dataclass(frozen=True, slots=True)
class DocumentUpload:
    document_type: str
    document_sub_type: str
    content: bytes
    mime_type: str | None


def document_decode(raw: str, index: int) -> bytes:
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError as exc:
        raise ValidationError(
            "document content must be base64", field=f"documents[{index}].content", error="invalid_document"
        ) from exc


def _document_store(application: KycApplication, upload: DocumentUpload, index: int) -> KycDocument:
    field = f"documents[{index}].content"
    limit = int(settings.KYC_DOCUMENT_MAX_BYTES)
    if len(upload.content) > limit:
        raise ValidationError(
            f"document is larger than {limit} bytes",
            field=field,
            error="document_too_large",
            details={"limit": limit},
        )
    sniffed = sniff_content_type(upload.content)
    if sniffed is None:
        raise ValidationError(
            "document must be a PDF, JPEG or PNG", field=field, error="document_type_not_allowed",
            details={"allowed": list(ALLOWED_TYPES)},
        )  # fmt: skip
    if upload.mime_type and upload.mime_type != sniffed:
        raise ValidationError(
            f"document content is {sniffed}, not {upload.mime_type}",
            field=field,
            error="document_type_mismatch",
        )
    digest = hashlib.sha256(upload.content).hexdigest()
    document = KycDocument(
        application=application,
        document_type=upload.document_type,
        document_sub_type=upload.document_sub_type,
        content_type=sniffed,
        size=len(upload.content),
        sha256=digest,
    )
    # Encrypted at rest (MultiFernet, settings.FIELD_ENCRYPTION_KEYS): the storage (disk, bucket, backups) never
    # holds the plaintext; read it back only through selectors.kyc_document_content. The stored name carries no
    # customer data: the document id, the sniffed extension and ".enc".
    document.file.save(
        f"{document.pk}.{EXTENSIONS[sniffed]}.enc", ContentFile(encrypt_bytes(upload.content)), save=False
    )
    document.save()
    return document


def kyc_application_submit(
    *,
    account: BrokerageAccount,
    actor: Any,
    sections: dict[str, dict[str, Any]],
    agreements: list[dict[str, Any]],
    documents: list[DocumentUpload],
    trusted_contact: dict[str, Any] | None,
    request: Any = None,
) -> KycApplication:
    """Save what was sent (sections replace their fields), then check and decide once nothing is missing."""
    with transaction.atomic():
        account = BrokerageAccount.objects.select_for_update().get(pk=account.pk)
        application, _ = KycApplication.objects.get_or_create(account=account)
        application = KycApplication.objects.select_for_update().get(pk=application.pk)
        if application.status not in EDITABLE:
            raise Conflict(
                f"the application is {application.status} and cannot be changed",
                error="kyc_not_editable",
                details={"status": application.status},
            )
        before = _snapshot(application)
        for section, names in _SECTION_FIELDS.items():
            for name in names:
                if name in sections.get(section, {}):
                    setattr(application, name, sections[section][name])
        if "tax_id" in sections.get("identity", {}):
            application.tax_id_digest = identifier_digest(application.tax_id) if application.tax_id else ""
        application.address_key = address_key(
            list(application.street_address), application.unit, application.city,
            application.postal_code, application.country,
        )  # fmt: skip
        if trusted_contact is not None:
            application.trusted_contact = trusted_contact
        application.save()
        for item in agreements:
            KycAgreement.objects.update_or_create(
                application=application,
                agreement=item["agreement"],
                defaults={
                    "signed_at": item["signed_at"],
                    "ip_address": item["ip_address"],
                    "revision": item.get("revision", ""),
                },
            )
            from apps.kyc.services.aml import device_observe

            device_observe(account=account, device_key=f"ip:{item['ip_address']}")
        for index, upload in enumerate(documents):
            _document_store(application, upload, index)
        signed = KycAgreement.objects.filter(application=application).values_list("agreement", flat=True)
        application.missing = checks.missing_fields(application.sections(), signed)
        application.save(update_fields=["missing", "updated_at"])
        ports.audit(
            actor=actor, action="kyc.application_saved", target=application, before=before,
            after=_snapshot(application), request=request,
        )  # fmt: skip
        if application.missing:
            _event(application, "KycApplicationSaved", {"missing": application.missing})
            return application
        _evaluate(application, account, actor=actor, request=request)
        return application


def _evaluate(application: KycApplication, account: BrokerageAccount, *, actor: Any, request: Any) -> None:
    before = _snapshot(application)
    now = timezone.now()
    application.submitted_at = now
    application.status = KycApplication.Status.SUBMITTED
    ports.account_status_change(
        account=account, status=BrokerageAccount.Status.SUBMITTED, actor=actor, reason="kyc submitted",
        request=request,
    )  # fmt: skip
    assert application.date_of_birth is not None
    results = [
        checks.check_age(application.date_of_birth, today_market_date()),
        checks.check_tax_id(
            application.tax_id, application.tax_id_type, application.country_of_tax_residence
        ),
        checks.check_country(application.country, settings.KYC_ALLOWED_COUNTRIES),
    ]
    pep = checks.check_disclosures(application.sections()["disclosures"])
    screen = _screen(application, trigger=SanctionsScreening.Trigger.SUBMIT)
    application.check_results = [r.as_dict() for r in [*results, pep]] + [
        {
            "name": "sanctions",
            "passed": screen.decision == SanctionsScreening.Decision.CLEAR,
            "reason": "" if screen.decision == "clear" else "possible sanctions match",
            "details": {"list_version": screen.list_version, "screening_id": str(screen.pk)},
        }
    ]
    failed = [r.name for r in results if not r.passed]
    reasons = [*failed]
    if not pep.passed:
        reasons.append("pep_disclosure")
    if screen.decision == SanctionsScreening.Decision.POSSIBLE_MATCH:
        reasons.append("sanctions_possible_match")
    application.review_reasons = reasons
    if failed:
        application.status = KycApplication.Status.ACTION_REQUIRED
        account_status = BrokerageAccount.Status.ACTION_REQUIRED
    elif reasons:
        application.status = KycApplication.Status.APPROVAL_PENDING
        account_status = BrokerageAccount.Status.APPROVAL_PENDING
    else:
        application.status = KycApplication.Status.APPROVED
        application.decided_at = now
        account_status = BrokerageAccount.Status.APPROVED
    application.save(
        update_fields=[
            "status",
            "submitted_at",
            "decided_at",
            "check_results",
            "review_reasons",
            "updated_at",
        ]
    )
    ports.account_status_change(
        account=account, status=account_status, actor=actor, reason="kyc automated checks", request=request
    )
    if application.status == KycApplication.Status.APPROVED:
        ports.account_status_change(
            account=account, status=BrokerageAccount.Status.ACTIVE, actor=actor, reason="kyc auto-approved",
            request=request,
        )  # fmt: skip
    ports.audit(
        actor=actor, action="kyc.application_evaluated", target=application, before=before,
        after={**_snapshot(application), "checks": application.check_results}, request=request,
    )  # fmt: skip
    _event(application, "KycApplicationEvaluated", {"status": application.status, "review_reasons": reasons})


def _screen(application: KycApplication, *, trigger: str, list_dir: Path | None = None) -> SanctionsScreening:
    screener = screening.screener_for(list_dir)
    result = screener.screen(application.full_name, application.date_of_birth)
    possible = result.is_possible_match
    return SanctionsScreening.objects.create(
        application=application,
        trigger=trigger,
        list_version=result.list_version,
        matcher_version=result.matcher_version,
        query_name=result.query[:300],
        normalized_query=result.normalized_query[:300],
        decision=result.decision,
        review_threshold=result.review_threshold,
        best_candidates=screening.candidates_evidence(result),
        review=SanctionsScreening.Review.OPEN if possible else SanctionsScreening.Review.NONE,
    )


def _locked(application: KycApplication) -> tuple[KycApplication, BrokerageAccount]:
    account = BrokerageAccount.objects.select_for_update().get(pk=application.account_id)
    return KycApplication.objects.select_for_update().get(pk=application.pk), account


def _open_screenings(application: KycApplication) -> list[SanctionsScreening]:
    return list(
        application.screenings.filter(
            review__in=[SanctionsScreening.Review.OPEN, SanctionsScreening.Review.OVERRIDE_PENDING]
        ).order_by("screened_at")
    )


def kyc_application_approve(
    *, application: KycApplication, actor: Any, request: Any = None
) -> KycApplication:
    """A compliance officer approves a queued application. Open sanctions hits must be cleared first."""
    with transaction.atomic():
        application, account = _locked(application)
        if application.status != KycApplication.Status.APPROVAL_PENDING:
            raise Conflict(f"only an APPROVAL_PENDING application can be approved, not {application.status}")
        if _open_screenings(application):
            raise BusinessRuleViolation(
                "an open sanctions hit must be cleared by two officers first",
                error="sanctions_override_required",
                rule="four_eyes_sanctions_override",
            )
        before = _snapshot(application)
        application.status = KycApplication.Status.APPROVED
        application.decided_at = timezone.now()
        application.decided_by = actor
        application.save(update_fields=["status", "decided_at", "decided_by", "updated_at"])
        for status in (BrokerageAccount.Status.APPROVED, BrokerageAccount.Status.ACTIVE):
            ports.account_status_change(
                account=account,
                status=status,
                actor=actor,
                reason="kyc approved by compliance",
                request=request,
            )
        ports.audit(
            actor=actor, action="kyc.application_approved", target=application, before=before,
            after=_snapshot(application), request=request,
        )  # fmt: skip
        _event(application, "KycApplicationApproved", {"decided_by": str(actor.pk)})
        return application


def kyc_application_reject(
    *, application: KycApplication, actor: Any, reason: str, request: Any = None
) -> KycApplication:
    with transaction.atomic():
        application, account = _locked(application)
        if application.status in (KycApplication.Status.REJECTED,):
            raise Conflict("the application is already rejected")
        before = _snapshot(application)
        was_active = account.status in (BrokerageAccount.Status.APPROVED, BrokerageAccount.Status.ACTIVE)
        application.status = KycApplication.Status.REJECTED
        application.decided_at = timezone.now()
        application.decided_by = actor
        application.info_requested = reason
        application.save(update_fields=["status", "decided_at", "decided_by", "info_requested", "updated_at"])
        ports.account_status_change(
            account=account,
            status=BrokerageAccount.Status.DISABLED if was_active else BrokerageAccount.Status.REJECTED,
            actor=actor, reason=f"kyc rejected: {reason}", request=request,
        )  # fmt: skip
        ports.audit(
            actor=actor, action="kyc.application_rejected", target=application, before=before,
            after={**_snapshot(application), "reason": reason}, request=request,
        )  # fmt: skip
        _event(application, "KycApplicationRejected", {"reason": reason})
        return application


def kyc_application_request_info(
    *, application: KycApplication, actor: Any, message: str, request: Any = None
) -> KycApplication:
    """Send the application back to the customer (ACTION_REQUIRED) with what to provide."""
    with transaction.atomic():
        application, account = _locked(application)
        if application.status not in (
            KycApplication.Status.APPROVAL_PENDING,
            KycApplication.Status.SUBMITTED,
        ):
            raise Conflict(f"cannot request information on a {application.status} application")
        before = _snapshot(application)
        application.status = KycApplication.Status.ACTION_REQUIRED
        application.info_requested = message
        application.save(update_fields=["status", "info_requested", "updated_at"])
        ports.account_status_change(
            account=account, status=BrokerageAccount.Status.ACTION_REQUIRED, actor=actor,
            reason="compliance requested information", request=request,
        )  # fmt: skip
        ports.audit(
            actor=actor, action="kyc.information_requested", target=application, before=before,
            after={**_snapshot(application), "message": message}, request=request,
        )  # fmt: skip
        _event(application, "KycInformationRequested", {"message": message})
        return application


def sanctions_override_request(
    *, screening_row: SanctionsScreening, actor: Any, reason: str, request: Any = None
) -> SanctionsScreening:
    """First officer: "this hit is a false positive". A second, different officer must confirm."""
    with transaction.atomic():
        row = SanctionsScreening.objects.select_for_update().get(pk=screening_row.pk)
        if row.review != SanctionsScreening.Review.OPEN:
            raise Conflict(f"the screening is {row.review}, not open")
        if not reason.strip():
            raise ValidationError("a reason is required to override a sanctions hit", field="reason")
        row.review = SanctionsScreening.Review.OVERRIDE_PENDING
        row.override_reason = reason
        row.override_first_by = actor
        row.override_first_at = timezone.now()
        row.save(update_fields=["review", "override_reason", "override_first_by", "override_first_at"])
        ports.audit(
            actor=actor, action="kyc.sanctions_override_requested", target=row, before={"review": "open"},
            after={"review": row.review, "reason": reason}, request=request,
        )  # fmt: skip
        return row


def sanctions_override_confirm(
    *, screening_row: SanctionsScreening, actor: Any, request: Any = None
) -> SanctionsScreening:
    """Second officer confirms the override (four eyes). Releases a re-screen KYC hold when nothing else is open."""
    with transaction.atomic():
        row = SanctionsScreening.objects.select_for_update().get(pk=screening_row.pk)
        if row.review != SanctionsScreening.Review.OVERRIDE_PENDING:
            raise Conflict(f"the screening is {row.review}; an override must be requested first")
        if row.override_first_by_id == actor.pk:
            raise BusinessRuleViolation(
                "the second approver must be a different officer", error="four_eyes_violation",
                rule="four_eyes_sanctions_override",
            )  # fmt: skip
        row.review = SanctionsScreening.Review.CLEARED
        row.override_second_by = actor
        row.override_second_at = timezone.now()
        row.save(update_fields=["review", "override_second_by", "override_second_at"])
        ports.audit(
            actor=actor, action="kyc.sanctions_override_confirmed", target=row,
            before={"review": "override_pending"}, after={"review": row.review}, request=request,
        )  # fmt: skip
        application = row.application
        if not _open_screenings(application):
            hold_release(
                account=application.account, kind=ComplianceHold.Kind.KYC, actor=actor, request=request,
                missing_ok=True,
            )  # fmt: skip
        return row


def sanctions_match_confirm(
    *, screening_row: SanctionsScreening, actor: Any, request: Any = None
) -> SanctionsScreening:
    """A true match: the application is rejected and the account frozen."""
    with transaction.atomic():
        row = SanctionsScreening.objects.select_for_update().get(pk=screening_row.pk)
        if row.review not in (SanctionsScreening.Review.OPEN, SanctionsScreening.Review.OVERRIDE_PENDING):
            raise Conflict(f"the screening is {row.review}")
        before = {"review": row.review}
        row.review = SanctionsScreening.Review.CONFIRMED
        row.save(update_fields=["review"])
        ports.audit(
            actor=actor, action="kyc.sanctions_match_confirmed", target=row, before=before,
            after={"review": row.review}, request=request,
        )  # fmt: skip
        hold_place(
            account=row.application.account, kind=ComplianceHold.Kind.FREEZE, reason="confirmed sanctions match",
            actor=actor, request=request, exists_ok=True,
        )  # fmt: skip
        kyc_application_reject(
            application=row.application, actor=actor, reason="confirmed sanctions match", request=request
        )
        return row


@dataclass(frozen=True, slots=True)
class RescreenSummary:
    list_version: str
    screened: int
    skipped: int
    new_matches: list[str]  # application ids


RESCREEN_STATUSES = (
    KycApplication.Status.APPROVED,
    KycApplication.Status.APPROVAL_PENDING,
    KycApplication.Status.ACTION_REQUIRED,
)


def sanctions_rescreen_all(*, list_dir: Path, actor: Any = "sanctions-rescreen") -> RescreenSummary:
    """Screen every submitted customer against ``list_dir``; flag (and hold) those that now match.

    One short transaction per customer; a customer already screened against this list version by the current
    matcher (``MATCHER_VERSION``) is skipped, so a re-run (or a redelivered task) does nothing twice, while a
    matcher upgrade re-screens everyone once even when the list did not change.
    """
    screener = screening.screener_for(list_dir)
    version = screener.sanctions_list.version
    screened = skipped = 0
    new_matches: list[str] = []
    ids = list(
        KycApplication.objects.filter(status__in=RESCREEN_STATUSES)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for application_id in ids:
        with transaction.atomic(durable=True):
            application = KycApplication.objects.select_for_update().get(pk=application_id)
            if application.screenings.filter(list_version=version, matcher_version=MATCHER_VERSION).exists():
                skipped += 1
                continue
            previous: set[int] = set()
            for row in application.screenings.exclude(decision=SanctionsScreening.Decision.CLEAR):
                previous.update(
                    c["ent_num"] for c in row.best_candidates if c["score"] >= row.review_threshold
                )
            row = _screen(application, trigger=SanctionsScreening.Trigger.RESCREEN, list_dir=list_dir)
            screened += 1
            flagged = {
                c["ent_num"]
                for c in row.best_candidates
                if c["score"] >= row.review_threshold or c["exact_name"]
            }
            if row.decision == SanctionsScreening.Decision.POSSIBLE_MATCH and flagged - previous:
                row.new_match = True
                row.save(update_fields=["new_match"])
                new_matches.append(str(application.pk))
                if application.status == KycApplication.Status.APPROVED:
                    hold_place(
                        account=application.account, kind=ComplianceHold.Kind.KYC,
                        reason=f"new possible sanctions match (list {version})", actor=actor, exists_ok=True,
                    )  # fmt: skip
                ports.audit(
                    actor=actor, action="kyc.sanctions_rescreen_match", target=row, before=None,
                    after={"list_version": version, "candidates": sorted(flagged - previous)},
                )  # fmt: skip
                _event(
                    application,
                    "SanctionsRescreenMatched",
                    {"list_version": version, "screening_id": str(row.pk)},
                )
            elif row.decision == SanctionsScreening.Decision.POSSIBLE_MATCH:
                # Same entries as before: the earlier review decision stands.
                row.review = SanctionsScreening.Review.NONE
                row.save(update_fields=["review"])
    return RescreenSummary(list_version=version, screened=screened, skipped=skipped, new_matches=new_matches)
