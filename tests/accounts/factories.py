"""factory_boy factories of the accounts app."""

from __future__ import annotations

from typing import Any

import factory
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.accounts import services
from apps.accounts.models import ApiKey, BrokerageAccount, User

PASSWORD = "correct horse battery staple 42"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    username = factory.LazyAttribute(lambda o: o.email)
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj: User, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create:
            obj.save()


class BrokerageAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BrokerageAccount

    owner = factory.SubFactory(UserFactory)
    account_number = factory.Sequence(lambda n: f"PT{n:010d}")


def customer(**user_fields: Any) -> User:
    """A registered customer with an ACTIVE brokerage account."""
    user = UserFactory(**user_fields)
    BrokerageAccountFactory(owner=user, status=BrokerageAccount.Status.ACTIVE)
    return user


def api_key(
    owner: User, scopes: tuple[str, ...] = ("read", "trade", "transfer"), **kw: Any
) -> tuple[ApiKey, str]:
    return services.api_key_create(owner=owner, name="test", scopes=scopes, **kw)


def key_headers(key: ApiKey, secret: str) -> dict[str, str]:
    return {"HTTP_APCA_API_KEY_ID": key.key_id, "HTTP_APCA_API_SECRET_KEY": secret}


def totp_device(user: User, *, confirmed: bool = True) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="totp", confirmed=confirmed)


def totp_code(device: TOTPDevice, offset_steps: int = 0) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = totp.time + offset_steps * device.step
    return f"{totp.token():0{device.digits}d}"
