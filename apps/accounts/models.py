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
