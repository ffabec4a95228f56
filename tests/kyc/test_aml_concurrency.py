"""Two alerts for one account raised at once both join one open case (the loser of the insert race joins it).

Found by ``make chaos`` (seed 9001): the trades consumer's task failed with ``kyc_aml_one_open_case`` when another
transaction opened the account's case first; Celery redelivered it and the retry passed. Here the race is real:
transaction A raises an alert and opens the case but has not committed; B raises another alert for the same account,
its case insert waits on A's row in the unique index; A commits; B must join A's case instead of failing.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from apps.accounts.models import BrokerageAccount
from apps.kyc.models import AmlAlert, AmlCase, Transfer
from apps.kyc.services.aml import aml_transfer_evaluate
from tests.kyc.factories import make_account, make_transfer

pytestmark = pytest.mark.django_db(transaction=True)


def _large_deposit(account: BrokerageAccount, amount: str) -> Transfer:
    transfer = make_transfer(account=account, amount=Decimal(amount), direction=Transfer.Direction.INCOMING)
    Transfer.objects.filter(pk=transfer.pk).update(completed_at=timezone.now())
    transfer.refresh_from_db()
    return transfer


def _waiting_on_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def test_concurrent_alerts_for_one_account_join_one_case(aml_thresholds: None) -> None:
    account = make_account(status=BrokerageAccount.Status.ACTIVE)
    first, second = _large_deposit(account, "12000"), _large_deposit(account, "15000")
    a_opened, a_commit = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def a() -> None:
        try:
            with transaction.atomic():
                assert len(aml_transfer_evaluate(transfer=first)) == 1
                a_opened.set()
                assert a_commit.wait(30)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            a_opened.set()
            connections.close_all()

    def b() -> None:
        try:
            with transaction.atomic():
                assert len(aml_transfer_evaluate(transfer=second)) == 1
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    thread_a, thread_b = threading.Thread(target=a), threading.Thread(target=b)
    thread_a.start()
    assert a_opened.wait(30)
    thread_b.start()
    deadline = time.monotonic() + 30
    while _waiting_on_a_lock() == 0 and thread_b.is_alive():  # B's case insert waits on A's uncommitted case
        assert time.monotonic() < deadline, "B never waited on A's case"
        time.sleep(0.01)
    a_commit.set()
    thread_a.join(30)
    thread_b.join(30)

    assert errors == []
    case = AmlCase.objects.get(account=account)
    assert sorted(AmlAlert.objects.filter(account=account).values_list("case_id", flat=True)) == [
        case.pk,
        case.pk,
    ]
