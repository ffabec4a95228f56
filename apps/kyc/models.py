"""KYC/CIP applications, sanctions screenings, compliance holds, AML alerts and cases, and funding transfers.

Invariants:
- One ``KycApplication`` per brokerage account; its tax id is encrypted at rest (``EncryptedTextField``) and
  only ever shown masked (``tax_id_masked``). ``tax_id_digest`` (keyed HMAC) matches "same person" across accounts.
- A ``SanctionsScreening`` row is evidence: the list version, the best candidates with scores and the decision
  are stored as screened and never edited; an override only adds who cleared it (two different people).
- An account is held (withdrawals refused) while it has an unreleased ``ComplianceHold``; at most one unreleased
  hold per (account, kind).
- ``AmlThresholdSet`` rows are versions: a rule uses the newest set whose ``effective_from`` is not in the future,
  and an alert records the version it was raised under. ``AmlAlert.fingerprint`` makes raising idempotent.
- ``Transfer`` amounts/quantities are exact decimals with the project precision; a transfer posts to the ledger
  (``apps.settlement.services``) with its id as the source id, so a repeated step never posts twice.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.accounts.models import BrokerageAccount
from apps.core.money import MONEY_DECIMAL_PLACES, MONEY_MAX_DIGITS, QTY_DECIMAL_PLACES, QTY_MAX_DIGITS
from apps.kyc.fields import EncryptedTextField, mask_tax_id


class KycApplication(models.Model):
    class Status(models.TextChoices):
        INCOMPLETE = "INCOMPLETE"  # saved, required fields missing
        SUBMITTED = "SUBMITTED"  # complete, checks running (inside the submit transaction)
        ACTION_REQUIRED = "ACTION_REQUIRED"  # the customer must fix or add something
        APPROVAL_PENDING = "APPROVAL_PENDING"  # in the compliance review queue
        APPROVED = "APPROVED"
        REJECTED = "REJECTED"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.OneToOneField(BrokerageAccount, on_delete=models.PROTECT, related_name="kyc_application")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.INCOMPLETE)
    # identity
    given_name = models.CharField(max_length=100, blank=True, default="")
    middle_name = models.CharField(max_length=100, blank=True, default="")
    family_name = models.CharField(max_length=100, blank=True, default="")
    date_of_birth = models.DateField(null=True, blank=True)
    tax_id = EncryptedTextField(blank=True, default="")
    tax_id_digest = models.CharField(max_length=64, blank=True, default="", db_index=True)
    tax_id_type = models.CharField(max_length=20, blank=True, default="")
    country_of_citizenship = models.CharField(max_length=3, blank=True, default="")
    country_of_birth = models.CharField(max_length=3, blank=True, default="")
    country_of_tax_residence = models.CharField(max_length=3, blank=True, default="")
    funding_source = models.JSONField(default=list, blank=True)
    # contact
    email_address = models.EmailField(blank=True, default="")
    phone_number = models.CharField(max_length=30, blank=True, default="")
    street_address = models.JSONField(default=list, blank=True)
    unit = models.CharField(max_length=50, blank=True, default="")
    city = models.CharField(max_length=100, blank=True, default="")
    state = models.CharField(max_length=50, blank=True, default="")
    postal_code = models.CharField(max_length=20, blank=True, default="")
    country = models.CharField(max_length=3, blank=True, default="")
    address_key = models.CharField(max_length=300, blank=True, default="", db_index=True)
    # disclosures (None until answered)
    is_control_person = models.BooleanField(null=True, blank=True)
    is_affiliated_exchange_or_finra = models.BooleanField(null=True, blank=True)
    is_politically_exposed = models.BooleanField(null=True, blank=True)
    immediate_family_exposed = models.BooleanField(null=True, blank=True)
    trusted_contact = models.JSONField(default=dict, blank=True)
    # outcome
    missing = models.JSONField(default=list, blank=True)
    check_results = models.JSONField(default=list, blank=True)
    review_reasons = models.JSONField(default=list, blank=True)
    info_requested = models.TextField(blank=True, default="")
    submitted_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["status", "submitted_at"], name="kyc_app_queue_idx")]

    def __str__(self) -> str:
        return f"KYC {self.account_id} {self.full_name} ({self.tax_id_masked}) {self.status}"

    @property
    def tax_id_masked(self) -> str:
        return mask_tax_id(self.tax_id)

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.given_name, self.middle_name, self.family_name) if p)

    def sections(self) -> dict[str, dict[str, Any]]:
        return {
            "contact": {
                "email_address": self.email_address,
                "phone_number": self.phone_number,
                "street_address": self.street_address,
                "unit": self.unit,
                "city": self.city,
                "state": self.state,
                "postal_code": self.postal_code,
                "country": self.country,
            },
            "identity": {
                "given_name": self.given_name,
                "middle_name": self.middle_name,
                "family_name": self.family_name,
                "date_of_birth": self.date_of_birth,
                "tax_id": self.tax_id,
                "tax_id_type": self.tax_id_type,
                "country_of_citizenship": self.country_of_citizenship,
                "country_of_birth": self.country_of_birth,
                "country_of_tax_residence": self.country_of_tax_residence,
                "funding_source": self.funding_source,
            },
            "disclosures": {
                "is_control_person": self.is_control_person,
                "is_affiliated_exchange_or_finra": self.is_affiliated_exchange_or_finra,
                "is_politically_exposed": self.is_politically_exposed,
                "immediate_family_exposed": self.immediate_family_exposed,
            },
        }


class KycAgreement(models.Model):
    class Kind(models.TextChoices):
        CUSTOMER = "customer_agreement"
        ACCOUNT = "account_agreement"
        MARGIN = "margin_agreement"
        CRYPTO = "crypto_agreement"

    # No index of its own: ``kyc_agreement_once`` leads with it.
    application = models.ForeignKey(
        KycApplication, on_delete=models.CASCADE, related_name="agreements", db_index=False
    )
    agreement = models.CharField(max_length=30, choices=Kind.choices)
    signed_at = models.DateTimeField()
    ip_address = models.GenericIPAddressField()
    revision = models.CharField(max_length=20, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["application", "agreement"], name="kyc_agreement_once"),
        ]

    def __str__(self) -> str:
        return f"{self.agreement} signed {self.signed_at:%Y-%m-%d}"


class KycDocument(models.Model):
    class DocumentType(models.TextChoices):
        IDENTITY = "identity_verification"
        ADDRESS = "address_verification"
        DATE_OF_BIRTH = "date_of_birth_verification"
        TAX_ID = "tax_id_verification"
        ACCOUNT_APPROVAL = "account_approval_letter"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    application = models.ForeignKey(KycApplication, on_delete=models.CASCADE, related_name="documents")
    document_type = models.CharField(max_length=40, choices=DocumentType.choices)
    document_sub_type = models.CharField(max_length=40, blank=True, default="")
    content_type = models.CharField(max_length=40)
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    file = models.FileField(upload_to="kyc/documents/%Y/%m/", max_length=200)
    uploaded_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.document_type} ({self.content_type}, {self.size} bytes)"


class SanctionsScreening(models.Model):
    class Decision(models.TextChoices):
        CLEAR = "clear"
        POSSIBLE_MATCH = "possible_match"

    class Trigger(models.TextChoices):
        SUBMIT = "submit"
        RESCREEN = "rescreen"

    class Review(models.TextChoices):
        NONE = "none"  # nothing to review (clear)
        OPEN = "open"  # a possible match awaiting a person
        OVERRIDE_PENDING = "override_pending"  # one officer cleared it; a second must confirm
        CLEARED = "cleared"  # false positive, confirmed by two officers
        CONFIRMED = "confirmed"  # a true match

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    application = models.ForeignKey(KycApplication, on_delete=models.PROTECT, related_name="screenings")
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    list_version = models.CharField(max_length=40)
    # The scoring rules' version (apps.kyc.sanctions.MATCHER_VERSION); "" for screenings made before it was kept.
    matcher_version = models.CharField(max_length=20, blank=True, default="")
    query_name = models.CharField(max_length=300)
    normalized_query = models.CharField(max_length=300)
    decision = models.CharField(max_length=20, choices=Decision.choices)
    review_threshold = models.PositiveSmallIntegerField()
    best_candidates = models.JSONField(default=list)
    new_match = models.BooleanField(default=False)  # a re-screen found a match the previous screening did not
    review = models.CharField(max_length=20, choices=Review.choices, default=Review.NONE)
    override_reason = models.TextField(blank=True, default="")
    override_first_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    override_first_at = models.DateTimeField(null=True, blank=True)
    override_second_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    override_second_at = models.DateTimeField(null=True, blank=True)
    screened_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(override_second_by__isnull=True)
                | ~Q(override_second_by=models.F("override_first_by")),
                name="kyc_screening_four_eyes",
            ),
        ]
        indexes = [models.Index(fields=["review", "screened_at"], name="kyc_screening_review_idx")]

    def __str__(self) -> str:
        return f"{self.list_version} {self.decision} ({self.review})"


class ComplianceHold(models.Model):
    class Kind(models.TextChoices):
        KYC = "kyc"
        AML = "aml"
        FREEZE = "freeze"

    account = models.ForeignKey(BrokerageAccount, on_delete=models.PROTECT, related_name="compliance_holds")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    reason = models.CharField(max_length=300)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(null=True, blank=True)
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "kind"], condition=Q(released_at__isnull=True), name="kyc_hold_one_active"
            ),
        ]

    def __str__(self) -> str:
        state = "released" if self.released_at else "active"
        return f"{self.kind} hold on {self.account_id} ({state})"


class AccountDevice(models.Model):
    """A device or network address an account was used from (for shared-device AML linking)."""

    # No index of its own: ``kyc_device_once`` leads with it.
    account = models.ForeignKey(BrokerageAccount, on_delete=models.CASCADE, related_name="+", db_index=False)
    device_key = models.CharField(max_length=100)
    first_seen = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "device_key"], name="kyc_device_once")]
        indexes = [models.Index(fields=["device_key"], name="kyc_device_key_idx")]

    def __str__(self) -> str:
        return self.device_key


def _money(**kwargs: Any) -> models.DecimalField:  # type: ignore[type-arg]
    return models.DecimalField(max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES, **kwargs)


class AmlThresholdSet(models.Model):
    version = models.PositiveIntegerField(unique=True)
    effective_from = models.DateTimeField()
    large_cash_amount = _money()
    structuring_floor = _money()  # deposits in [floor, large_cash_amount) count toward structuring
    structuring_min_count = models.PositiveSmallIntegerField()
    structuring_window_hours = models.PositiveIntegerField()
    rapid_window_hours = models.PositiveIntegerField()
    rapid_min_ratio = models.DecimalField(max_digits=5, decimal_places=4)  # withdrawn / deposited in window
    rapid_min_amount = _money()
    rapid_max_trades = models.PositiveSmallIntegerField()
    wash_window_seconds = models.PositiveIntegerField()
    dormant_days = models.PositiveIntegerField()
    dormant_min_amount = _money()
    note = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"AML thresholds v{self.version} from {self.effective_from:%Y-%m-%d}"


class AmlTradeObservation(models.Model):
    """One side of an executed trade, as AML monitoring saw it (fed by ``aml_trade_observe``)."""

    # No index of its own: ``kyc_aml_trade_acct_idx`` leads with it.
    account = models.ForeignKey(BrokerageAccount, on_delete=models.PROTECT, related_name="+", db_index=False)
    trade_id = models.CharField(max_length=64)
    side = models.CharField(max_length=4)  # buy | sell
    symbol = models.CharField(max_length=20)
    qty = models.DecimalField(max_digits=QTY_MAX_DIGITS, decimal_places=QTY_DECIMAL_PLACES)
    price = _money()
    executed_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["trade_id", "side"], name="kyc_aml_trade_side_once")]
        indexes = [models.Index(fields=["account", "executed_at"], name="kyc_aml_trade_acct_idx")]

    def __str__(self) -> str:
        return f"{self.trade_id} {self.side} {self.qty} {self.symbol}"


class AmlCase(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        INVESTIGATING = "investigating"
        CLOSED = "closed"

    class Disposition(models.TextChoices):
        NONE = ""
        NO_ACTION = "no_action"
        SAR_FILED = "sar_filed"
        ACCOUNT_RESTRICTED = "account_restricted"
        ACCOUNT_CLOSED = "account_closed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(BrokerageAccount, on_delete=models.PROTECT, related_name="aml_cases")
    status = models.CharField(max_length=15, choices=Status.choices, default=Status.OPEN)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    disposition = models.CharField(max_length=20, choices=Disposition.choices, default="", blank=True)
    sar_narrative = models.TextField(blank=True, default="")
    opened_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account"], condition=~Q(status="closed"), name="kyc_aml_one_open_case"
            ),
        ]

    def __str__(self) -> str:
        return f"AML case {self.id} ({self.status})"


class AmlAlert(models.Model):
    class Rule(models.TextChoices):
        LARGE_CASH = "large_cash_deposit"
        STRUCTURING = "structuring"
        RAPID_IN_OUT = "rapid_in_out"
        WASH_TRADE = "wash_trade"
        DORMANT = "dormant_activity"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(BrokerageAccount, on_delete=models.PROTECT, related_name="aml_alerts")
    rule = models.CharField(max_length=30, choices=Rule.choices)
    fingerprint = models.CharField(max_length=200, unique=True)
    details = models.JSONField(default=dict)
    thresholds = models.ForeignKey(AmlThresholdSet, on_delete=models.PROTECT, related_name="+")
    case = models.ForeignKey(AmlCase, null=True, blank=True, on_delete=models.PROTECT, related_name="alerts")
    raised_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.rule} on {self.account_id}"


class AmlCaseNote(models.Model):
    case = models.ForeignKey(AmlCase, on_delete=models.PROTECT, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"note by {self.author_id} at {self.created_at:%Y-%m-%d %H:%M}"


class Transfer(models.Model):
    class Direction(models.TextChoices):
        INCOMING = "INCOMING"
        OUTGOING = "OUTGOING"

    class Type(models.TextChoices):
        ACH = "ach"
        WIRE = "wire"
        ACATS = "acats"

    class Status(models.TextChoices):
        APPROVAL_PENDING = "APPROVAL_PENDING"  # a large withdrawal waiting for two approvers
        QUEUED = "QUEUED"
        PENDING = "PENDING"  # sent to the (simulated) network
        COMPLETE = "COMPLETE"
        RETURNED = "RETURNED"
        REJECTED = "REJECTED"
        CANCELED = "CANCELED"

    TERMINAL = frozenset({"COMPLETE", "RETURNED", "REJECTED", "CANCELED"})

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: ``kyc_transfer_acct_idx`` leads with it.
    account = models.ForeignKey(
        BrokerageAccount, on_delete=models.PROTECT, related_name="transfers", db_index=False
    )
    direction = models.CharField(max_length=8, choices=Direction.choices)
    type = models.CharField(max_length=5, choices=Type.choices)
    status = models.CharField(max_length=16, choices=Status.choices)
    amount = _money(null=True, blank=True)
    symbol = models.CharField(max_length=20, blank=True, default="")
    qty = models.DecimalField(
        max_digits=QTY_MAX_DIGITS, decimal_places=QTY_DECIMAL_PLACES, null=True, blank=True
    )
    cost_basis = _money(null=True, blank=True)
    reason = models.CharField(max_length=200, blank=True, default="")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requires_approval = models.BooleanField(default=False)
    first_approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    second_approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    ledger_posted = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(type="acats") & Q(amount__isnull=True) & Q(qty__gt=0) & ~Q(symbol=""))
                | (~Q(type="acats") & Q(amount__gt=0) & Q(qty__isnull=True)),
                name="kyc_transfer_shape",
            ),
            # Four eyes: requester, first and second approver are three different people.
            models.CheckConstraint(
                condition=(Q(first_approver__isnull=True) | ~Q(first_approver=models.F("requested_by")))
                & (Q(second_approver__isnull=True) | ~Q(second_approver=models.F("requested_by")))
                & (Q(second_approver__isnull=True) | ~Q(second_approver=models.F("first_approver"))),
                name="kyc_transfer_four_eyes",
            ),
        ]
        indexes = [models.Index(fields=["account", "created_at"], name="kyc_transfer_acct_idx")]

    def __str__(self) -> str:
        what = f"{self.qty} {self.symbol}" if self.type == "acats" else f"{self.amount}"
        return f"{self.direction} {self.type} {what} ({self.status})"
