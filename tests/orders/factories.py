"""factory_boy factories and helpers of the orders tests."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import factory
from django.db import transaction

from apps.accounts.models import BrokerageAccount, User
from apps.orders.models import Asset


class AssetFactory(factory.django.DjangoModelFactory[Asset]):
    class Meta:
        model = Asset
        django_get_or_create = ("symbol",)

    symbol = "AAPL"
    name = factory.LazyAttribute(lambda o: f"{o.symbol} Inc.")  # type: ignore[attr-defined,no-untyped-call]
    exchange = "NASDAQ"
    price_increment = Decimal("0.01")
    min_trade_increment = Decimal("0.000000001")
    min_order_size = Decimal("0.000000001")
    fractionable = True
    reference_price = Decimal("100")


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"trader{n}@example.com")  # type: ignore[attr-defined,no-untyped-call]
    username = factory.Sequence(lambda n: f"trader{n}")  # type: ignore[attr-defined,no-untyped-call]


class BrokerageAccountFactory(factory.django.DjangoModelFactory[BrokerageAccount]):
    class Meta:
        model = BrokerageAccount

    owner = factory.SubFactory(UserFactory)  # type: ignore[attr-defined,no-untyped-call]
    account_number = factory.Sequence(lambda n: f"OR{n:08d}")  # type: ignore[attr-defined,no-untyped-call]
    status = BrokerageAccount.Status.ACTIVE


def funded_account(cash: Decimal = Decimal("100000"), **kwargs: Any) -> BrokerageAccount:
    """An ACTIVE cash account with ``cash`` of settled cash (a real ledger deposit)."""
    from apps.settlement.services import cash_deposit_post

    account: BrokerageAccount = BrokerageAccountFactory.create(**kwargs)
    if cash:
        with transaction.atomic():
            cash_deposit_post(account=account, amount=cash, transfer_id=f"test-{uuid.uuid4()}")
    return account


def asset_create(**kwargs: Any) -> Asset:
    asset: Asset = AssetFactory.create(**kwargs)
    return asset
