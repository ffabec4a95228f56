"""The Idempotency-Key contract: replay, reuse with another body (422), concurrent duplicate (409)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from apps.accounts.models import User
from apps.core.errors import InsufficientFunds
from apps.core.idempotency import idempotent_execute, owner_of
from apps.core.models import IdempotencyRecord, StoredEvent
from apps.core.outbox import event_record

pytestmark = pytest.mark.django_db(transaction=True)


class _TransferView(APIView):
    """A minimal mutating endpoint whose effect is one stored event; a body with amount 0 is refused."""

    gate: Callable[[], None] = staticmethod(lambda: None)

    def post(self, request: Request) -> Response:
        data: dict[str, Any] = dict(request.data)

        def operation() -> Response:
            if str(data.get("amount")) == "0":
                raise InsufficientFunds(rule="test.min_amount", details={"amount": "0"})
            env = event_record(
                topic="t",
                key="k",
                event_type="test.TransferRequested",
                aggregate_type="transfer",
                aggregate_id=str(uuid.uuid4()),
                payload={"amount": str(data["amount"])},
            )
            type(self).gate()
            if str(data.get("amount")) == "late":  # refused after its write: the write must not survive
                raise InsufficientFunds(rule="test.late_refusal", details={})
            return Response({"id": str(env.aggregate_id), "amount": str(data["amount"])}, status=201)

        return idempotent_execute(request, operation, owner=owner_of(request))


@pytest.fixture
def user() -> User:
    return User.objects.create_user(email="a@example.com", username="a", password="pw-irrelevant-here")


def _post(user: User, body: dict[str, Any], key: str | None) -> Response:
    factory = APIRequestFactory()
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    request = factory.post("/transfers", body, format="json", **headers)
    force_authenticate(request, user=user)
    response: Response = _TransferView.as_view()(request)
    return response


def test_same_key_same_body_replays_the_stored_response(user: User) -> None:
    first = _post(user, {"amount": "10.00"}, "k-1")
    second = _post(user, {"amount": "10.00"}, "k-1")
    assert first.status_code == second.status_code == 201
    assert second.data == first.data
    assert second["Idempotent-Replayed"] == "true"
    assert StoredEvent.objects.filter(event_type="test.TransferRequested").count() == 1


def test_same_key_different_body_is_refused_and_changes_nothing(user: User) -> None:
    _post(user, {"amount": "10.00"}, "k-2")
    response = _post(user, {"amount": "11.00"}, "k-2")
    assert response.status_code == 422
    assert response.data["error"] == "idempotency_key_reused"
    assert StoredEvent.objects.count() == 1


def test_a_refusal_is_stored_as_the_outcome(user: User) -> None:
    first = _post(user, {"amount": "0"}, "k-3")
    again = _post(user, {"amount": "0"}, "k-3")
    assert first.status_code == again.status_code == 403
    assert again.data == first.data
    assert first.data["error"] == "insufficient_buying_power"
    assert StoredEvent.objects.count() == 0


def test_a_refusal_after_writes_keeps_none_of_them_and_is_stored(user: User) -> None:
    first = _post(user, {"amount": "late"}, "k-late")
    again = _post(user, {"amount": "late"}, "k-late")
    assert first.status_code == again.status_code == 403
    assert again.data == first.data
    assert again["Idempotent-Replayed"] == "true"
    assert StoredEvent.objects.count() == 0
    record = IdempotencyRecord.objects.get(key="k-late")
    assert (record.state, record.response_status) == (IdempotencyRecord.State.COMPLETED, 403)


def test_keys_are_scoped_per_owner(user: User) -> None:
    other = User.objects.create_user(email="b@example.com", username="b", password="pw-irrelevant-here")
    assert _post(user, {"amount": "1"}, "shared").status_code == 201
    assert _post(other, {"amount": "1"}, "shared").status_code == 201
    assert StoredEvent.objects.count() == 2


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("x" * 256, id="too-long"),
        pytest.param("ключ", id="non-ascii"),
    ],
)
def test_malformed_keys_are_rejected(user: User, key: str) -> None:
    response = _post(user, {"amount": "1"}, key)
    assert response.status_code == 422
    assert response.data["field"] == "Idempotency-Key"
    assert StoredEvent.objects.count() == 0


def test_concurrent_duplicate_gets_409_while_the_first_runs(user: User) -> None:
    entered, release = threading.Event(), threading.Event()
    results: dict[str, Response] = {}

    def gate() -> None:
        entered.set()
        assert release.wait(30)

    def first() -> None:
        try:
            results["first"] = _post(user, {"amount": "5"}, "k-race")
        finally:
            connection.close()

    _TransferView.gate = staticmethod(gate)
    try:
        thread = threading.Thread(target=first)
        thread.start()
        assert entered.wait(30)
        _TransferView.gate = staticmethod(lambda: None)
        results["second"] = _post(user, {"amount": "5"}, "k-race")
        release.set()
        thread.join(30)
    finally:
        _TransferView.gate = staticmethod(lambda: None)
        release.set()
    assert results["second"].status_code == 409
    assert results["second"].data["error"] == "idempotency_key_in_progress"
    assert results["first"].status_code == 201
    assert StoredEvent.objects.count() == 1
    assert IdempotencyRecord.objects.get(key="k-race").state == IdempotencyRecord.State.COMPLETED
    # After completion, the duplicate gets the stored response.
    assert _post(user, {"amount": "5"}, "k-race").data == results["first"].data
