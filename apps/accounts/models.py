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
