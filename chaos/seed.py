"""A fresh world for one run: an empty database (dropped and recreated), empty Redis DBs, an empty Kafka broker
with a fresh topic prefix, migrations, topics, the demo assets, and ``accounts`` ACTIVE customers funded through
the ledger services, each with an API key. Deterministic for a given seed (except generated ids and secrets).
"""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass
from decimal import Decimal

import psycopg
import redis

from chaos.config import ChaosConfig

SEED_CASH = Decimal("100000.00")
SEED_SHARES = Decimal("500")
PG_PASSWORD = "brokerage"  # noqa: S105 (the local-only chaos instance, as scripts/services.sh sets it)


@dataclass(frozen=True)
class SeededAccount:
    index: int
    account_id: str
    user_id: str
    key_id: str
    secret: str


def kafka_wipe(cfg: ChaosConfig) -> None:
    """Stop OUR chaos broker and remove its data, so it starts empty (``services.sh`` formats it again).

    Each run's topics carry a fresh prefix, so earlier runs' partitions would otherwise pile up in the data
    directory, and every kill -9 of the broker recovers all of them (176 logs in 17 s after three runs).
    """
    from chaos.services import services_sh

    services_sh(cfg, "kafka", "stop")
    shutil.rmtree(cfg.run_dir / "kafka" / "data", ignore_errors=True)


def database_recreate(cfg: ChaosConfig) -> None:
    """Drop and recreate OUR chaos database (the role owns it; FORCE ends leftover sessions of a previous run)."""
    with psycopg.connect(
        f"postgresql://127.0.0.1:{cfg.pg_port}/postgres",
        user="brokerage",
        password=PG_PASSWORD,
        autocommit=True,
    ) as conn:
        conn.execute("DROP DATABASE IF EXISTS brokerage WITH (FORCE)")
        conn.execute("CREATE DATABASE brokerage OWNER brokerage")


def redis_flush(cfg: ChaosConfig) -> None:
    for db in (0, 1):
        redis.Redis(host="127.0.0.1", port=cfg.redis_port, db=db).flushdb()


def platform_prepare() -> dict[str, Decimal]:
    """Migrate, create topics, load demo assets; returns each symbol's reference price. Needs django.setup()."""
    from django.core.management import call_command

    from apps.orders.models import Asset

    out = io.StringIO()
    call_command("migrate", interactive=False, verbosity=0, stdout=out)
    call_command("kafka_topics", stdout=out)
    call_command("demo_seed", stdout=out)
    return {a.symbol: a.reference_price for a in Asset.objects.all() if a.reference_price is not None}


def accounts_seed(*, count: int, symbols: tuple[str, ...]) -> list[SeededAccount]:
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from apps.accounts.models import BrokerageAccount
    from apps.accounts.services import account_open, account_status_set, api_key_create
    from apps.settlement.services import cash_deposit_post, shares_deposit_post

    seeded: list[SeededAccount] = []
    for i in range(count):
        email = f"chaos{i:04d}@example.com"
        with transaction.atomic(durable=True):
            user = get_user_model().objects.create_user(username=f"chaos{i:04d}", email=email, password=None)
            account = account_open(user=user, actor="chaos-seed")
            account_status_set(
                account=account, status=BrokerageAccount.Status.ACTIVE, actor="chaos-seed", reason="chaos"
            )
            cash_deposit_post(account=account, amount=SEED_CASH, transfer_id=f"chaos-seed-cash-{account.pk}")
            for symbol in symbols:
                shares_deposit_post(
                    account=account, symbol=symbol, qty=SEED_SHARES, cost_basis=Decimal("0"),
                    transfer_id=f"chaos-seed-{symbol}-{account.pk}",
                )  # fmt: skip
            key, secret = api_key_create(owner=user, name="chaos", scopes=["read", "trade", "transfer"])
        seeded.append(SeededAccount(i, str(account.pk), str(user.pk), key.key_id, secret))
    return seeded
