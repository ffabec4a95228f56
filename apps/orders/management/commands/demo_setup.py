"""``manage.py demo_setup``: demo customers and a market-maker user, ready to trade (idempotent).

Everything goes through the owning apps' services, exactly as production onboarding would, so it is audited
and evented: ``account_open`` + ``account_status_set(ACTIVE)`` (apps.accounts), ``cash_deposit_post`` and, for
the market maker, ``shares_deposit_post`` per demo instrument (apps.settlement, idempotent by transfer id),
``api_key_create`` for the API keys.

API secrets exist only at creation. They are written to ``.run/demo-credentials.json`` (mode 0600) and printed
once; a later run reuses every key in that file that still authenticates and creates (and prints) only the
missing ones. Run ``demo_seed`` first: the market maker's shares are deposited per demo instrument.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from apps.accounts.authentication import ApiKeyAuthentication
from apps.accounts.models import BrokerageAccount, User
from apps.accounts.services import account_open, account_status_set, api_key_create
from apps.core.money import MONEY_QUANTUM
from apps.orders.models import Asset
from apps.settlement.services import cash_deposit_post, shares_deposit_post

ACTOR = "demo_setup"  # the system process named in the audit trail


@dataclass(frozen=True)
class DemoUser:
    role: str  # the key in the credentials file
    email: str
    cash: Decimal
    shares_per_symbol: Decimal = Decimal(0)


DEMO_USERS = (
    DemoUser(role="customer", email="demo@brokerage.local", cash=Decimal("100000")),
    DemoUser(role="customer2", email="demo2@brokerage.local", cash=Decimal("100000")),
    DemoUser(
        role="market_maker",
        email="market-maker@brokerage.local",
        cash=Decimal("5000000"),
        shares_per_symbol=Decimal("10000"),
    ),
)


def credentials_path() -> Path:
    return Path(settings.BASE_DIR) / ".run" / "demo-credentials.json"


def credentials_load(path: Path | None = None) -> dict[str, dict[str, str]]:
    path = path or credentials_path()
    if not path.exists():
        return {}
    data: dict[str, dict[str, str]] = json.loads(path.read_text())
    return data


def _user_ensure(spec: DemoUser) -> tuple[User, str | None]:
    """The demo user (a new one gets a random password, returned once)."""
    existing = get_user_model().objects.filter(email__iexact=spec.email).first()
    if existing is not None:
        return existing, None
    password = secrets.token_urlsafe(12)
    user: User = get_user_model().objects.create_user(
        username=spec.email.split("@")[0], email=spec.email, password=password
    )
    return user, password


def _account_ensure(user: User) -> BrokerageAccount:
    with transaction.atomic():
        account = BrokerageAccount.objects.filter(owner=user).first()
        if account is None:
            account = account_open(user=user, actor=ACTOR)
        if account.status != BrokerageAccount.Status.ACTIVE:
            account = account_status_set(
                account=account, status=BrokerageAccount.Status.ACTIVE, actor=ACTOR, reason="demo account"
            )
    return account


def _fund(account: BrokerageAccount, spec: DemoUser) -> list[str]:
    done: list[str] = []
    if spec.cash:
        with transaction.atomic():
            cash_deposit_post(
                account=account,
                amount=spec.cash,
                transfer_id=f"demo-cash-{account.pk}",
                description="demo funding",
            )
        done.append(f"cash {spec.cash}")
    if spec.shares_per_symbol:
        for asset in Asset.objects.filter(status=Asset.Status.ACTIVE).order_by("symbol"):
            price = asset.reference_price or Decimal(0)
            with transaction.atomic():
                shares_deposit_post(
                    account=account,
                    symbol=asset.symbol,
                    qty=spec.shares_per_symbol,
                    cost_basis=(spec.shares_per_symbol * price).quantize(MONEY_QUANTUM),
                    transfer_id=f"demo-shares-{account.pk}-{asset.symbol}",
                )
            done.append(f"{spec.shares_per_symbol} {asset.symbol}")
    return done


def _key_valid(entry: dict[str, str] | None, user: User) -> bool:
    if not entry or "key_id" not in entry or "secret_key" not in entry:
        return False
    key = ApiKeyAuthentication._valid_key(entry["key_id"], entry["secret_key"])
    return key is not None and key.owner_id == user.pk


class Command(BaseCommand):
    help = "Create demo customers and a market-maker user (ACTIVE, funded, API keys) — idempotent."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--credentials", default=None, help="where to write the API keys (JSON)")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["credentials"]) if options["credentials"] else credentials_path()
        stored = credentials_load(path)
        out: dict[str, dict[str, str]] = {}
        created: list[str] = []
        for spec in DEMO_USERS:
            user, password = _user_ensure(spec)
            account = _account_ensure(user)
            funded = _fund(account, spec)
            entry = stored.get(spec.role)
            if not _key_valid(entry, user):
                key, secret = api_key_create(owner=user, name=f"demo {spec.role}", scopes=["read", "trade"])
                entry = {"key_id": key.key_id, "secret_key": secret}
                created.append(spec.role)
            assert entry is not None
            out[spec.role] = {
                "email": spec.email,
                "account_id": str(account.pk),
                "account_number": account.account_number,
                "key_id": entry["key_id"],
                "secret_key": entry["secret_key"],
            }
            password = password or (stored.get(spec.role) or {}).get("password")
            if password:
                out[spec.role]["password"] = password  # for the web login (admin/session), if wanted
            self.stdout.write(
                f"{spec.role}: {spec.email} account {account.account_number} ACTIVE; {', '.join(funded)}"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(out, fh, indent=2)
        if created:
            self.stdout.write(f"New API keys (shown once; also in {path}):")
            for role in created:
                key_id, secret = out[role]["key_id"], out[role]["secret_key"]
                self.stdout.write(f"  {role}: APCA-API-KEY-ID={key_id} APCA-API-SECRET-KEY={secret}")
        else:
            self.stdout.write(f"API keys unchanged (in {path}).")
