"""Seed the live-server database for the fuzz and conformance runs; prints the two users' API keys as JSON.

Run as ``DJANGO_SETTINGS_MODULE=... python -m security.seed`` after ``migrate``. Idempotent enough for reruns:
every run makes three fresh customers
(A and B for the fuzz, a third for conformance): ACTIVE accounts, settled cash, 10 AAPL, keys with every scope.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import django


def main() -> None:
    django.setup()
    from django.db import transaction

    from apps.accounts.models import BrokerageAccount, User
    from apps.accounts.services import api_key_create
    from apps.orders.models import Asset
    from apps.settlement.services import cash_deposit_post, shares_deposit_post

    Asset.objects.get_or_create(
        symbol="AAPL",
        defaults={
            "name": "Apple Inc.",
            "exchange": "NASDAQ",
            "price_increment": Decimal("0.01"),
            "min_trade_increment": Decimal("0.000000001"),
            "min_order_size": Decimal("0.000000001"),
            "fractionable": True,
            "reference_price": Decimal("100"),
        },
    )
    users = []
    for n in range(3):
        tag = uuid.uuid4().hex[:10]
        with transaction.atomic():
            user = User.objects.create_user(
                username=f"sec-{tag}", email=f"sec-{tag}@example.com", password=uuid.uuid4().hex
            )
            account = BrokerageAccount.objects.create(
                owner=user, account_number=f"SEC{tag[:9].upper()}", status=BrokerageAccount.Status.ACTIVE
            )
            cash_deposit_post(account=account, amount=Decimal("100000"), transfer_id=f"sec-{tag}")
            shares_deposit_post(
                account=account,
                symbol="AAPL",
                qty=Decimal("10"),
                cost_basis=Decimal("1000"),
                transfer_id=f"sec-s-{tag}",
            )
            key, secret = api_key_create(
                owner=user, name=f"security-{n}", scopes=["read", "trade", "transfer"]
            )
        users.append({"key_id": key.key_id, "secret": secret, "account_id": str(account.pk)})
    print(json.dumps(users))


if __name__ == "__main__":
    main()
