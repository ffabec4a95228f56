"""factory_boy factories of the accounts app."""

from __future__ import annotations

from typing import Any

import factory
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.accounts import services
from apps.accounts.models import ApiKey, BrokerageAccount, User

PASSWORD = "correct horse battery staple 42"


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"customer{n}@example.com")  # type: ignore[attr-defined,no-untyped-call]
    username = factory.LazyAttribute(lambda o: o.email)  # type: ignore[attr-defined,no-untyped-call]
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)  # type: ignore[attr-defined,no-untyped-call]

    @factory.post_generation  # type: ignore[attr-defined,untyped-decorator]
    def _save(obj: User, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create:
            obj.save()


class BrokerageAccountFactory(factory.django.DjangoModelFactory[BrokerageAccount]):
    class Meta:
        model = BrokerageAccount

    owner = factory.SubFactory(UserFactory)  # type: ignore[attr-defined,no-untyped-call]
    account_number = factory.Sequence(lambda n: f"PT{n:010d}")  # type: ignore[attr-defined,no-untyped-call]


def make_user(**fields: Any) -> User:
    return UserFactory.create(**fields)


def make_account(**fields: Any) -> BrokerageAccount:
    return BrokerageAccountFactory.create(**fields)


def customer(**user_fields: Any) -> User:
    """A registered customer with an ACTIVE brokerage account."""
    user = make_user(**user_fields)
    make_account(owner=user, status=BrokerageAccount.Status.ACTIVE)
    return user


def api_key(
    owner: User, scopes: tuple[str, ...] = ("read", "trade", "transfer"), **kw: Any
) -> tuple[ApiKey, str]:
    return services.api_key_create(owner=owner, name="test", scopes=scopes, **kw)


def key_headers(key: ApiKey, secret: str) -> dict[str, str]:
    """Request headers for ``client.get(url, headers=key_headers(key, secret))``."""
    return {"APCA-API-KEY-ID": key.key_id, "APCA-API-SECRET-KEY": secret}


def totp_device(user: User, *, confirmed: bool = True) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="totp", confirmed=confirmed)


def totp_code(device: TOTPDevice, offset_steps: int = 0) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = totp.time + offset_steps * device.step
    return f"{totp.token():0{device.digits}d}"
