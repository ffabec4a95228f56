"""factory_boy factories for the settlement tests (``account_create`` is the typed entry point)."""

from __future__ import annotations

from typing import Any

import factory

from apps.accounts.models import BrokerageAccount, User
from apps.orders.models import Asset, Order


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


def order_create(
    account: BrokerageAccount,
    *,
    side: str,
    qty: str,
    limit_price: str | None = None,
    symbol: str = "AAPL",
    status: str = "new",
    **kwargs: Any,
) -> Order:
    """An order row as the orders service writes it (tests place its hold/reservation through settlement)."""
    from decimal import Decimal

    from django.utils import timezone

    asset, _ = Asset.objects.get_or_create(
        symbol=symbol,
        defaults={"name": f"{symbol} Inc.", "exchange": "NASDAQ", "reference_price": Decimal("60")},
    )
    now = timezone.now()
    order: Order = Order.objects.create(
        client_order_id=f"c-{Order.objects.count() + 1}-{account.pk}",
        account=account,
        asset=asset,
        symbol=symbol,
        side=side,
        type="limit" if limit_price else "market",
        time_in_force="gtc" if limit_price else "day",
        qty=Decimal(qty),
        limit_price=Decimal(limit_price) if limit_price else None,
        status=status,
        created_at=now,
        updated_at=now,
        submitted_at=now,
        **kwargs,
    )
    return order
