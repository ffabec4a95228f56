"""Deadlocks and serialization failures never reach clients: ``transaction_retry`` reruns the whole transaction.

Both faults are real PostgreSQL errors: a forced 40001 (``RAISE ... ERRCODE``) and a genuine 40P01 from two
transactions locking two rows in opposite orders.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import IntegrityError, OperationalError, connection, transaction
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory

from apps.core.idempotency import idempotent_execute
from apps.core.models import IdempotencyRecord
from apps.core.transactions import DEADLOCK_DETECTED, SERIALIZATION_FAILURE, sqlstate_of, transaction_retry
from apps.settlement.models import JournalEntry
from apps.settlement.services import cash_deposit_post
from tests.orders.factories import funded_account

pytestmark = pytest.mark.django_db(transaction=True)


def _force_serialization_failure() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DO $$ BEGIN RAISE EXCEPTION 'forced' USING ERRCODE = 'serialization_failure'; END $$")


def _request(key: str) -> Request:
    raw = APIRequestFactory().post("/v1/test", {"amount": "5"}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    return Request(raw)


@pytest.mark.parametrize(
    ("failures", "status", "deposits"),
    [
        pytest.param(1, 200, 1, id="one-failure-retried"),
        pytest.param(4, 200, 1, id="four-failures-retried"),
    ],
)
def test_forced_serialization_failure_is_retried_inside_idempotent_execute(
    failures: int, status: int, deposits: int
) -> None:
    account = funded_account(cash=Decimal(0))
    attempts: list[int] = []

    def operation() -> Response:
        attempts.append(1)
        cash_deposit_post(account=account, amount=Decimal("5"), transfer_id="T-retry")
        if len(attempts) <= failures:
            _force_serialization_failure()  # after the deposit: the retry must roll it back first
        return Response({"ok": True})

    response = idempotent_execute(_request("k-retry"), operation, owner="o1")

    assert response.status_code == status
    assert response.data == {"ok": True}
    assert len(attempts) == failures + 1
    assert JournalEntry.objects.filter(source_id="T-retry").count() == deposits
    record = IdempotencyRecord.objects.get(owner="o1", key="k-retry")
    assert record.state == IdempotencyRecord.State.COMPLETED
    assert record.response_status == 200


def test_retries_are_bounded_and_the_last_failure_propagates() -> None:
    calls: list[int] = []

    @transaction_retry(attempts=3, base_delay=0)
    def always_fails() -> None:
        calls.append(1)
        with transaction.atomic(durable=True):
            _force_serialization_failure()

    with pytest.raises(OperationalError) as info:
        always_fails()
    assert sqlstate_of(info.value) == SERIALIZATION_FAILURE
    assert len(calls) == 3


def test_other_database_errors_are_not_retried() -> None:
    calls: list[int] = []

    @transaction_retry(base_delay=0)
    def unique_violation() -> None:
        calls.append(1)
        with transaction.atomic(durable=True), connection.cursor() as cursor:
            cursor.execute("DO $$ BEGIN RAISE EXCEPTION 'dup' USING ERRCODE = 'unique_violation'; END $$")

    with pytest.raises(IntegrityError) as info:
        unique_violation()
    assert sqlstate_of(info.value) == "23505"
    assert calls == [1]


def test_not_retried_inside_an_enclosing_transaction() -> None:
    calls: list[int] = []

    @transaction_retry(base_delay=0)
    def inner() -> None:
        calls.append(1)
        _force_serialization_failure()

    with pytest.raises(OperationalError), transaction.atomic():
        inner()
    assert calls == [1]


def test_real_deadlock_between_two_transfers_is_retried_and_both_commit() -> None:
    a = funded_account(cash=Decimal(0))
    b = funded_account(cash=Decimal(0))
    # Both ledger rows exist before the race, so each transaction only locks.
    cash_deposit_post(account=a, amount=Decimal("1"), transfer_id="warm-a")
    cash_deposit_post(account=b, amount=Decimal("1"), transfer_id="warm-b")
    barrier = threading.Barrier(2)
    attempts: dict[str, int] = {"ab": 0, "ba": 0}
    errors: list[BaseException] = []
    seen_states: list[str | None] = []

    def lock_rows_in(order: str) -> None:
        from apps.settlement.models import LedgerAccount

        first, second = (a, b) if order == "ab" else (b, a)

        @transaction_retry(base_delay=0.05)
        def work() -> None:
            attempts[order] += 1
            try:
                with transaction.atomic(durable=True):
                    LedgerAccount.objects.select_for_update().filter(account=first, kind="cash_settled").get()
                    if attempts[order] == 1:
                        barrier.wait(timeout=10)  # both hold their first row: the second lock deadlocks
                    LedgerAccount.objects.select_for_update().filter(
                        account=second, kind="cash_settled"
                    ).get()
                    cash_deposit_post(account=first, amount=Decimal("2"), transfer_id=f"dl-{order}")
            except OperationalError as exc:
                seen_states.append(sqlstate_of(exc))
                raise

        try:
            work()
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=lock_rows_in, args=(o,)) for o in ("ab", "ba")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert seen_states == [DEADLOCK_DETECTED]  # exactly one victim, and it never escaped
    assert sorted(attempts.values()) == [1, 2]
    assert JournalEntry.objects.filter(source_id__in=["dl-ab", "dl-ba"]).count() == 2
