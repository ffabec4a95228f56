"""factory_boy factories and payload builders of the kyc tests."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import factory
from django.utils import timezone

from apps.accounts.models import BrokerageAccount, User
from apps.kyc.models import Transfer

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.7\n" + b"0" * 64


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"kyc-customer{n}@example.com")  # type: ignore[attr-defined,no-untyped-call]
    username = factory.LazyAttribute(lambda o: o.email)  # type: ignore[attr-defined,no-untyped-call]


class StaffFactory(UserFactory):
    email = factory.Sequence(lambda n: f"officer{n}@example.com")  # type: ignore[attr-defined,no-untyped-call]
    is_staff = True


class AccountFactory(factory.django.DjangoModelFactory[BrokerageAccount]):
    class Meta:
        model = BrokerageAccount

    owner = factory.SubFactory(UserFactory)  # type: ignore[attr-defined,no-untyped-call]
    account_number = factory.Sequence(lambda n: f"KY{n:010d}")  # type: ignore[attr-defined,no-untyped-call]
    status = BrokerageAccount.Status.ONBOARDING


class TransferFactory(factory.django.DjangoModelFactory[Transfer]):
    """A completed cash deposit by default (history for the AML rules)."""

    class Meta:
        model = Transfer

    account = factory.SubFactory(AccountFactory, status=BrokerageAccount.Status.ACTIVE)  # type: ignore[attr-defined,no-untyped-call]
    direction = Transfer.Direction.INCOMING
    type = Transfer.Type.ACH
    status = Transfer.Status.COMPLETE
    amount = Decimal("1000")
    requested_by = factory.LazyAttribute(lambda o: o.account.owner)  # type: ignore[attr-defined,no-untyped-call]
    completed_at = factory.LazyFunction(timezone.now)  # type: ignore[attr-defined,no-untyped-call]


def make_user(**fields: Any) -> User:
    return UserFactory.create(**fields)


def make_staff(**fields: Any) -> User:
    user: User = StaffFactory.create(**fields)
    return user


def make_account(**fields: Any) -> BrokerageAccount:
    return AccountFactory.create(**fields)


def make_transfer(**fields: Any) -> Transfer:
    return TransferFactory.create(**fields)


def application_payload(
    *,
    given_name: str = "Emily",
    family_name: str = "Johnson",
    date_of_birth: str = "1985-04-12",
    tax_id: str = "123-45-6789",
    tax_id_type: str = "USA_SSN",
    country: str = "USA",
    street: str = "20 N San Mateo Dr",
    pep: bool = False,
    documents: bool = True,
) -> dict[str, Any]:
    """A complete, clean Alpaca-shaped account-opening body (override fields to make it not clean)."""
    signed = datetime(2024, 1, 2, 15, 0, tzinfo=UTC).isoformat()
    body: dict[str, Any] = {
        "contact": {
            "email_address": "emily@example.com",
            "phone_number": "+15555551234",
            "street_address": [street],
            "city": "San Mateo",
            "state": "CA",
            "postal_code": "94401",
            "country": country,
        },
        "identity": {
            "given_name": given_name,
            "family_name": family_name,
            "date_of_birth": date_of_birth,
            "tax_id": tax_id,
            "tax_id_type": tax_id_type,
            "country_of_citizenship": "USA",
            "country_of_tax_residence": "USA",
            "funding_source": ["employment_income"],
        },
        "disclosures": {
            "is_control_person": False,
            "is_affiliated_exchange_or_finra": False,
            "is_politically_exposed": pep,
            "immediate_family_exposed": False,
        },
        "agreements": [
            {"agreement": "customer_agreement", "signed_at": signed, "ip_address": "203.0.113.7"},
            {"agreement": "account_agreement", "signed_at": signed, "ip_address": "203.0.113.7"},
        ],
        "trusted_contact": {
            "given_name": "Jane",
            "family_name": "Johnson",
            "email_address": "jane@example.com",
        },
    }
    if documents:
        body["documents"] = [
            {
                "document_type": "identity_verification",
                "content": base64.b64encode(PNG).decode(),
                "mime_type": "image/png",
            }
        ]
    return body


def make_order(
    *, account: BrokerageAccount, side: str, symbol: str = "XYZ", parent: Any = None, leg_role: str = ""
) -> Any:
    """A bare order row (the AML consumer only maps engine order ids to accounts)."""
    from apps.orders.models import Asset, Order

    asset, _ = Asset.objects.get_or_create(
        symbol=symbol,
        defaults={"name": f"{symbol} Inc.", "exchange": "NASDAQ", "price_increment": Decimal("0.01"),
                  "min_trade_increment": Decimal("0.000000001"), "min_order_size": Decimal("0.000000001"),
                  "reference_price": Decimal("12.50")},
    )  # fmt: skip
    now = timezone.now()
    return Order.objects.create(
        client_order_id=f"kyc-{Order.objects.count()}", account=account, asset=asset, symbol=symbol, side=side,
        type="limit", time_in_force="day", qty=Decimal(100), limit_price=Decimal("12.50"), parent=parent,
        leg_role=leg_role, created_at=now, updated_at=now, submitted_at=now,
    )  # fmt: skip
