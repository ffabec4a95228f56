"""Idempotency keys for every mutating endpoint.

Contract (header ``Idempotency-Key``, scoped to the authenticated owner):
- same key, same request (method, path, body) → the stored response, byte for byte, and nothing changes;
- same key, different request → 422 ``idempotency_key_reused``;
- same key while the first request is still running → 409 ``idempotency_key_in_progress``.

How: the key is claimed in its own short committed transaction (so a concurrent duplicate sees it at once); the
business change and the stored response then commit together in one durable transaction, so a response is
stored if and only if its effect happened. If the process dies mid-request, the claim expires after
``CLAIM_TTL`` and a retry may take it over. A 5xx is never stored (it is not an outcome), so it can be retried.
A deadlock or serialization failure (40P01/40001) reruns the whole transaction (``apps.core.transactions``,
bounded), so clients never see one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.http.request import RawPostDataException
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.errors import BrokerageError, IdempotencyKeyInUse, IdempotencyKeyReused, ValidationError
from apps.core.models import IdempotencyRecord
from apps.core.renderers import dumps
from apps.core.sql import hot_cursor
from apps.core.transactions import transaction_retry

HEADER = "Idempotency-Key"
CLAIM_TTL = timedelta(seconds=60)
MAX_KEY_LENGTH = 255


def request_fingerprint(request: Request) -> str:
    digest = hashlib.sha256()
    digest.update(request.method.encode() if request.method else b"")
    digest.update(b"\0")
    digest.update(request.get_full_path().encode())
    digest.update(b"\0")
    try:
        body = request.body or b""
    except RawPostDataException:
        # The view parsed the body first: fingerprint the parsed data canonically instead.
        body = dumps(request.data)
    digest.update(body)
    return digest.hexdigest()


def _stored_response(record: IdempotencyRecord) -> Response:
    import orjson

    body = orjson.loads(bytes(record.response_body)) if record.response_body else None
    response = Response(body, status=record.response_status)
    response["Idempotent-Replayed"] = "true"
    return response


# The claim is ONE autocommitted statement (a round trip, not BEGIN/SAVEPOINT/INSERT/RELEASE/COMMIT): it is
# visible to a concurrent duplicate as soon as it returns. Only a key that exists already takes the locking path.
_CLAIM_SQL = """
    INSERT INTO core_idempotencyrecord
        (owner, key, method, path, request_hash, state, locked_until, created_at)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (owner, key) DO NOTHING
    RETURNING id
"""
_STORE_SQL = """
    UPDATE core_idempotencyrecord SET state = %s, response_status = %s, response_body = %s, completed_at = %s
    WHERE id = %s
"""
_CLAIM_FIELDS = (
    "id",
    "owner",
    "key",
    "method",
    "path",
    "request_hash",
    "state",
    "locked_until",
    "created_at",
)


def _claim(owner: str, key: str, request: Request, fingerprint: str) -> IdempotencyRecord | Response:
    """Claim the key, or answer from/for the existing record."""
    now = timezone.now()
    values: list[Any] = [
        owner,
        key,
        request.method or "",
        request.path,
        fingerprint,
        IdempotencyRecord.State.IN_PROGRESS,
    ]
    values += [now + CLAIM_TTL, now]
    for _attempt in range(3):
        with hot_cursor() as cursor:
            cursor.execute(_CLAIM_SQL, values)
            row = cursor.fetchone()
        if row is not None:
            return IdempotencyRecord.from_db(connection.alias, _CLAIM_FIELDS, [row[0], *values])
        try:
            return _claim_existing(owner, key, fingerprint, now)
        except IdempotencyRecord.DoesNotExist:
            continue  # its request failed and released the key in between: claim it afresh
    raise IdempotencyKeyInUse(
        field=HEADER
    )  # claimed and released three times meanwhile: let the client retry


@transaction_retry
def _claim_existing(owner: str, key: str, fingerprint: str, now: datetime) -> IdempotencyRecord | Response:
    """The key exists: replay its response, refuse, or take over a claim whose request died."""
    with transaction.atomic(durable=True):
        record = IdempotencyRecord.objects.select_for_update().get(owner=owner, key=key)
        if record.request_hash != fingerprint:
            raise IdempotencyKeyReused(field=HEADER)
        if record.state == IdempotencyRecord.State.COMPLETED:
            return _stored_response(record)
        if record.locked_until > now:
            raise IdempotencyKeyInUse(field=HEADER)
        # The first attempt died without an outcome: take the claim over.
        record.locked_until = now + CLAIM_TTL
        record.save(update_fields=["locked_until"])
        return record


def _release(record: IdempotencyRecord) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk, state=IdempotencyRecord.State.IN_PROGRESS).delete()


def idempotent_execute(
    request: Request,
    operation: Callable[[], Response],
    *,
    owner: str,
    required: bool = False,
) -> Response:
    """Run ``operation`` (which must do its writes with plain ``transaction.atomic()``) under the key's contract.

    The operation's writes, and the stored response, commit in one durable transaction. Without a key the
    operation runs once in a durable transaction of its own (or is refused when ``required``).
    """
    key = request.headers.get(HEADER)
    if key is None:
        if required:
            raise ValidationError(
                f"The {HEADER} header is required.", field=HEADER, error="idempotency_key_missing"
            )
        return _durable(operation)()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise ValidationError(
            f"{HEADER} must be 1-{MAX_KEY_LENGTH} printable ASCII characters.",
            field=HEADER,
            error="invalid_idempotency_key",
        )
    claimed = _claim(owner, key, request, request_fingerprint(request))
    if isinstance(claimed, Response):
        return claimed
    record = claimed

    def store(response: Response) -> Response:
        record.state = IdempotencyRecord.State.COMPLETED
        record.response_status = response.status_code
        record.response_body = dumps(response.data) if response.data is not None else None
        record.completed_at = timezone.now()
        with hot_cursor() as cursor:  # record.save(update_fields=...) without building the statement
            cursor.execute(
                _STORE_SQL,
                [record.state, record.response_status, record.response_body, record.completed_at, record.pk],
            )
        return response

    # A deadlock or serialization failure reruns the whole transaction; the client never sees it.
    @transaction_retry
    def complete() -> Response:
        # No savepoint around the operation (two round trips per request): a refusal rolls back the whole
        # transaction, which holds only the operation's writes, and is stored in a transaction of its own.
        try:
            with transaction.atomic(durable=True):
                response = operation()
                if response.status_code >= 500:
                    raise _NotStorable(response)
                return store(response)
        except BrokerageError as exc:
            # A refusal is an outcome: store it so a retry gets the same answer.
            with transaction.atomic(durable=True):
                return store(Response(exc.as_body(), status=exc.status))

    try:
        return complete()
    except _NotStorable as exc:
        _release(record)
        return exc.response
    except BaseException:
        _release(record)
        raise


def _durable(operation: Callable[[], Response]) -> Callable[[], Response]:
    @transaction_retry
    def run() -> Response:
        with transaction.atomic(durable=True):
            return operation()

    return run


class _NotStorable(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response
        super().__init__("5xx responses are not stored")


def owner_of(request: Request) -> str:
    user: Any = request.user
    return str(user.pk)
