"""Transfer steps under concurrency: a real deadlock is retried whole, and concurrent steps all commit exactly once.

Chaos found ``transfer_step`` dying with 40P01 inside ``ledger_rows_lock`` and never being retried. Here the
deadlock is genuine: another transaction holds (and has updated) the house funding row and then asks for the
brokerage account row that the step already holds.
"""

from __future__ import annotations

import logging
import threading
import time
from decimal import Decimal

import pytest
from django.db import OperationalError, connection, connections, transaction
from django.utils import timezone

from apps.accounts.models import BrokerageAccount
from apps.kyc.models import Transfer
from apps.kyc.tasks import transfer_step
from apps.settlement.models import JournalEntry, LedgerAccount
from apps.settlement.services import ledger_rows_lock
from tests.orders.factories import funded_account

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _aml_thresholds(aml_thresholds: None) -> None:
    """Every transfer step runs the AML rules."""


Status = Transfer.Status
FIT = LedgerAccount.Kind.FUNDING_IN_TRANSIT
SETTLED = LedgerAccount.Kind.CASH_SETTLED


def _withdrawal(account: BrokerageAccount, amount: str) -> Transfer:
    transfer: Transfer = Transfer.objects.create(
        account=account,
        direction=Transfer.Direction.OUTGOING,
        type=Transfer.Type.ACH,
        status=Status.QUEUED,
        amount=Decimal(amount),
        requested_by=account.owner,
    )
    return transfer


def _settled(account: BrokerageAccount) -> Decimal:
    balance: Decimal = LedgerAccount.objects.get(account=account, kind=SETTLED).balance
    return balance


def _wait_until_blocked(holder_pid: int) -> None:
    """Until some other backend of this database waits on a lock held by ``holder_pid``."""
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", [holder_pid]
            )
            if cursor.fetchone()[0] > 0:
                return
        time.sleep(0.02)


def test_deadlocked_transfer_step_is_retried_and_posts_once(caplog: pytest.LogCaptureFixture) -> None:
    account = funded_account(cash=Decimal("1000"))
    transfer = _withdrawal(account, "100")
    with transaction.atomic():
        house = ledger_rows_lock([(None, FIT, "USD")])  # exists before the race
    house_pk = house[(None, FIT, "USD")].pk
    house_before = house[(None, FIT, "USD")].balance
    other_errors: list[BaseException] = []
    holding = threading.Event()

    def other() -> None:
        try:
            with transaction.atomic():
                ledger_rows_lock([(None, FIT, "USD")])
                LedgerAccount.objects.filter(pk=house_pk).update(updated_at=timezone.now())
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    pid = cursor.fetchone()[0]
                holder_pid.append(pid)
                holding.set()
                _wait_until_blocked(pid)  # the step now waits for the house row while holding the account row
                BrokerageAccount.objects.select_for_update().get(pk=account.pk)  # closes the cycle
        except OperationalError as exc:  # pragma: no cover - the step is the victim (it waited first)
            other_errors.append(exc)
        finally:
            connections.close_all()

    holder_pid: list[int] = []
    thread = threading.Thread(target=other)
    thread.start()
    holding.wait()
    with caplog.at_level(logging.WARNING, logger="apps.core.transactions"):
        status = transfer_step(str(transfer.pk), Status.QUEUED)
    thread.join()

    assert other_errors == []
    assert status == Status.PENDING
    retries = [r for r in caplog.records if r.getMessage() == "transaction retry"]
    assert [(r.function, r.sqlstate) for r in retries] == [("_transfer_step_transaction", "40P01")]  # type: ignore[attr-defined]
    assert JournalEntry.objects.filter(source_type="transfer", source_id=str(transfer.pk)).count() == 1
    assert _settled(account) == Decimal("900")
    assert LedgerAccount.objects.get(pk=house_pk).balance == house_before + Decimal("100")


def test_concurrent_steps_on_shared_house_rows_all_commit_exactly_once() -> None:
    accounts = [funded_account(cash=Decimal("500")) for _ in range(6)]
    transfers = [_withdrawal(a, f"{10 * (i + 1)}") for i, a in enumerate(accounts)]
    # Accounts with no ledger rows yet: their first deposit creates them while others lock the house rows.
    fresh = [funded_account(cash=Decimal(0)) for _ in range(4)]
    deposits = [
        Transfer.objects.create(
            account=a,
            direction=Transfer.Direction.INCOMING,
            type=Transfer.Type.ACH,
            status=Status.PENDING,
            amount=Decimal("250"),
            requested_by=a.owner,
        )
        for a in fresh
    ]
    start = threading.Barrier(len(transfers) + len(deposits))
    results: dict[str, str] = {}
    errors: list[BaseException] = []

    def run(transfer: Transfer) -> None:
        try:
            start.wait()
            if transfer.direction == Transfer.Direction.OUTGOING:
                transfer_step(str(transfer.pk), Status.QUEUED)
                results[str(transfer.pk)] = transfer_step(str(transfer.pk), Status.PENDING)
            else:
                results[str(transfer.pk)] = transfer_step(str(transfer.pk), Status.PENDING)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(t,)) for t in [*transfers, *deposits]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert results == {str(t.pk): Status.COMPLETE for t in [*transfers, *deposits]}
    assert [_settled(a) for a in accounts] == [Decimal(500 - 10 * (i + 1)) for i in range(6)]
    assert [_settled(a) for a in fresh] == [Decimal("250")] * 4
    ids = [str(t.pk) for t in [*transfers, *deposits]]
    assert JournalEntry.objects.filter(source_type="transfer", source_id__in=ids).count() == 10
    assert LedgerAccount.objects.filter(account__in=fresh, kind=SETTLED).count() == 4
