"""People and programs: the custom user (email login) and API keys (Alpaca-style key id + secret)."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models.functions import Lower


class CustomerUserManager(UserManager["User"]):
    def get_by_natural_key(self, username: str | None) -> User:
        # Email is the login; matching is case-insensitive so "A@x.com" and "a@x.com" are one person.
        return self.get(email__iexact=username)


class User(AbstractUser):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS = ["username"]

    objects = CustomerUserManager()  # type: ignore[misc]

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_uniq"),
        ]

    def __str__(self) -> str:
        return self.email


class BrokerageAccount(models.Model):
    """One brokerage account per customer. Status follows Alpaca's account lifecycle."""

    class Status(models.TextChoices):
        ONBOARDING = "ONBOARDING"
        SUBMITTED = "SUBMITTED"
        ACTION_REQUIRED = "ACTION_REQUIRED"
        APPROVAL_PENDING = "APPROVAL_PENDING"
        APPROVED = "APPROVED"
        ACTIVE = "ACTIVE"
        REJECTED = "REJECTED"
        DISABLED = "DISABLED"
        ACCOUNT_CLOSED = "ACCOUNT_CLOSED"

    class AccountType(models.TextChoices):
        CASH = "cash"
        MARGIN = "margin"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account_number = models.CharField(max_length=20, unique=True)
    owner = models.OneToOneField(User, on_delete=models.PROTECT, related_name="brokerage_account")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ONBOARDING)
    account_type = models.CharField(max_length=10, choices=AccountType.choices, default=AccountType.CASH)
    currency = models.CharField(max_length=3, default="USD")
    trading_blocked = models.BooleanField(default=False)
    transfers_blocked = models.BooleanField(default=False)
    account_blocked = models.BooleanField(default=False)
    # Set by reconciliation or by operations (the kill switch); trading stops while it is set.
    trading_halted_reason = models.CharField(max_length=200, blank=True, default="")
    pattern_day_trader = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.account_number


class ApiKey(models.Model):
    """A program's credential: a public ``key_id`` and a secret of which only a keyed hash is stored.

    Invariants: the secret is never stored or logged (only ``secret_hash`` = HMAC-SHA256 under the server pepper);
    a revoked or expired key never authenticates; ``scopes`` is a non-empty subset of ``Scope``.
    """

    class Scope(models.TextChoices):
        READ = "read"
        TRADE = "trade"
        TRANSFER = "transfer"

    key_id = models.CharField(max_length=32, unique=True)
    secret_hash = models.CharField(max_length=64)
    # No index of its own: ``accounts_apikey_owner_idx`` leads with it.
    owner = models.ForeignKey(User, on_delete=models.PROTECT, related_name="api_keys", db_index=False)
    name = models.CharField(max_length=100)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["owner", "created_at"], name="accounts_apikey_owner_idx")]

    def __str__(self) -> str:
        return self.key_id

    @property
    def is_authenticated(self) -> bool:
        # DRF treats request.auth as an opaque token; this keeps accidental truthiness checks meaningful.
        return True


class AuditChainHead(models.Model):
    """The single row that serializes audit appends (``SELECT ... FOR UPDATE``) and remembers the chain's tip."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64)

    def __str__(self) -> str:
        return f"audit head #{self.seq}"


class AuditRecord(models.Model):
    """An append-only, hash-chained record of one state change.

    Invariants: ``seq`` runs 1, 2, 3, ... without gaps; ``prev_hash`` is the previous row's ``hash`` (64 zeros
    for seq 1); ``hash`` = sha256 over the canonical JSON of the row's fields and ``prev_hash``. PostgreSQL
    triggers refuse UPDATE and DELETE (migration 0004), and the runtime role has only SELECT/INSERT on the
    table and does not own it (``manage.py db_roles``); ``manage.py audit_verify`` checks the whole chain.
    No foreign keys: a record must outlive, and never block, the rows it talks about.
    """

    seq = models.BigIntegerField(unique=True)
    occurred_at = models.DateTimeField()
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=100)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    ip = models.CharField(max_length=45, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        indexes = [
            models.Index(fields=["target_type", "target_id"], name="accounts_audit_target_idx"),
            models.Index(fields=["actor_id", "occurred_at"], name="accounts_audit_actor_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action}"
