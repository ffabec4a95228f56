"""factory_boy factories for the settlement tests (``account_create`` is the typed entry point)."""

from __future__ import annotations

from typing import Any

import factory

from apps.accounts.models import BrokerageAccount, User


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"ledger{n}@example.com")  # type: ignore[attr-defined,no-untyped-call]
    username = factory.Sequence(lambda n: f"ledger{n}")  # type: ignore[attr-defined,no-untyped-call]


class BrokerageAccountFactory(factory.django.DjangoModelFactory[BrokerageAccount]):
    class Meta:
        model = BrokerageAccount

    owner = factory.SubFactory(UserFactory)  # type: ignore[attr-defined,no-untyped-call]
    account_number = factory.Sequence(lambda n: f"LG{n:08d}")  # type: ignore[attr-defined,no-untyped-call]
    status = BrokerageAccount.Status.ACTIVE


def account_create(**kwargs: Any) -> BrokerageAccount:
    account: BrokerageAccount = BrokerageAccountFactory.create(**kwargs)
    return account
