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


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"kyc-customer{n}@example.com")
    username = factory.LazyAttribute(lambda o: o.email)


class StaffFactory(UserFactory):
    email = factory.Sequence(lambda n: f"officer{n}@example.com")
    is_staff = True


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BrokerageAccount

    owner = factory.SubFactory(UserFactory)
    account_number = factory.Sequence(lambda n: f"KY{n:010d}")
    status = BrokerageAccount.Status.ONBOARDING


class TransferFactory(factory.django.DjangoModelFactory):
    """A completed cash deposit by default (history for the AML rules)."""

    class Meta:
        model = Transfer

    account = factory.SubFactory(AccountFactory, status=BrokerageAccount.Status.ACTIVE)
    direction = Transfer.Direction.INCOMING
    type = Transfer.Type.ACH
    status = Transfer.Status.COMPLETE
    amount = Decimal("1000")
    requested_by = factory.LazyAttribute(lambda o: o.account.owner)
    completed_at = factory.LazyFunction(timezone.now)


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
