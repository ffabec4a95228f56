"""Killing a Celery worker mid-settlement loses nothing and doubles nothing.

A real ``celery -A brokerage worker --pool prefork --concurrency 1`` runs against the test database; it takes
one ``settlement_run_due`` task that settles many trades (one transaction each). When the first settlements
have committed, its pool child is SIGKILLed. ``acks_late`` + ``reject_on_worker_lost`` put the task back on the
queue, the worker forks a fresh child, and the rerun settles the rest: each trade is settled exactly once
(idempotent by trade entry id), the books verify, and the balances are what they must be.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.core.management import call_command

from apps.accounts.models import BrokerageAccount
from apps.settlement import selectors, services
from apps.settlement.models import JournalEntry, SettlementObligation
from tests.procs import celery_worker, wait_until
from tests.settlement.factories import account_create
from tests.settlement.helpers import fill

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TRADES = 100
MON = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # settles Tue 2026-11-24


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.fixture
def worker() -> Iterator[subprocess.Popen[bytes]]:
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("settlement", "unacked", "unacked_index")  # this run's broker DB only
    with celery_worker("settlement") as proc:
        yield proc
    broker.delete("settlement", "unacked", "unacked_index")
    broker.close()


def _settled() -> int:
    return JournalEntry.objects.filter(source_type="settlement").count()


def test_sigkill_of_the_worker_child_mid_settlement_loses_and_doubles_nothing(
    worker: subprocess.Popen[bytes],
) -> None:
    from apps.settlement.tasks import settlement_run_due

    account: BrokerageAccount = account_create()
    services.cash_deposit_post(account=account, amount=Decimal("100000"), transfer_id="dep")
    for i in range(TRADES):
        services.fill_settle_trade_date(
            fill=fill(account.pk, order_id=f"o{i}", side="buy", qty="1", price="10", at=MON, fill_id=f"k{i}")
        )
    assert SettlementObligation.objects.filter(settled_at__isnull=True).count() == TRADES

    settlement_run_due.apply_async(kwargs={"as_of": "2026-11-24"})
    wait_until(lambda: _settled() >= 1, "the first settlement", worker)
    [child] = _children(worker.pid)
    os.kill(child, signal.SIGKILL)
    at_kill = _settled()
    assert 1 <= at_kill < TRADES, "the kill must land mid-run"

    # The pool forks a new child; the requeued task settles what is left.
    wait_until(lambda: _settled() == TRADES, "every trade settled after the kill", worker)
    assert _children(worker.pid) != [child]
    time.sleep(0.5)  # give a (wrong) double run the chance to show itself before counting
    assert _settled() == TRADES
    assert SettlementObligation.objects.filter(settled_at__isnull=True).count() == 0
    assert (
        SettlementObligation.objects.values("trade_entry_id").distinct().count()
        == JournalEntry.objects.filter(entry_type="SETTLE").values("source_id").distinct().count()
        == TRADES
    )
    call_command("ledger_verify")
    pos = selectors.position(account, "AAPL")
    assert pos is not None
    assert (pos.qty, pos.qty_settled, pos.qty_unsettled) == (Decimal(TRADES), Decimal(TRADES), Decimal(0))
    assert selectors.cash_balances(account).settled == Decimal("100000") - Decimal(10 * TRADES)
