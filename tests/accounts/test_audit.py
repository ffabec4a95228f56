"""The audit trail: chained hashes, append-only in PostgreSQL, and a verifier that finds the first broken link."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.test import RequestFactory

from apps.accounts.audit import GENESIS_HASH, audit_record, audit_verify
from apps.accounts.models import AuditChainHead, AuditRecord
from tests.accounts.factories import customer

pytestmark = pytest.mark.django_db


def _three_records() -> list[AuditRecord]:
    user = customer()
    return [
        audit_record(actor=user, action=f"test.step{n}", target=user, before={"n": n}, after={"n": n + 1})
        for n in range(3)
    ]


def test_records_chain_and_capture_who_where_what() -> None:
    user = customer()
    request = RequestFactory().post("/x", REMOTE_ADDR="203.0.113.9", HTTP_USER_AGENT="pytest-agent")
    request.request_id = "req-123"  # type: ignore[attr-defined]
    first = audit_record(
        actor=user,
        action="test.first",
        target=user,
        before={"amount": Decimal("1.50")},
        after=None,
        request=request,
    )
    second = audit_record(
        actor="reconciliation", action="test.second", target=("thing", "42"), before=None, after={}
    )
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert second.seq == first.seq + 1
    assert (first.actor_id, first.actor_label) == (str(user.pk), user.email)
    assert (first.ip, first.user_agent, first.request_id) == ("203.0.113.9", "pytest-agent", "req-123")
    assert first.before == {"amount": "1.50"}
    assert (second.actor_id, second.actor_label, second.target_type, second.target_id) == (
        "",
        "reconciliation",
        "thing",
        "42",
    )
    head = AuditChainHead.objects.get(pk=1)
    assert (head.seq, head.last_hash) == (second.seq, second.hash)
    assert audit_verify().ok


@pytest.mark.parametrize("statement", ["UPDATE", "DELETE"], ids=["update", "delete"])
def test_postgres_refuses_update_and_delete(statement: str) -> None:
    record = _three_records()[0]
    sql = {
        "UPDATE": "UPDATE accounts_auditrecord SET action = 'forged' WHERE id = %s",
        "DELETE": "DELETE FROM accounts_auditrecord WHERE id = %s",
    }[statement]
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, [record.pk])
    record.refresh_from_db()
    assert record.action == "test.step0"


def _tamper(sql: str, params: list[Any]) -> None:
    """Edit the table around the triggers, as only the table owner or a superuser could."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE accounts_auditrecord DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE accounts_auditrecord ENABLE TRIGGER USER")


def test_verifier_finds_an_edited_row() -> None:
    records = _three_records()
    assert audit_verify().ok
    _tamper("UPDATE accounts_auditrecord SET after = %s WHERE id = %s", ['{"n": 999}', records[1].pk])
    result = audit_verify()
    assert (result.ok, result.broken_seq, result.checked) == (False, records[1].seq, 1)
    assert result.reason == "content does not match its hash"
    with pytest.raises(CommandError, match=f"broken at record #{records[1].seq}"):
        call_command("audit_verify")


def test_verifier_finds_a_rehashed_row_by_the_next_link() -> None:
    records = _three_records()
    from apps.accounts.audit import _row_fields, record_hash

    forged = records[1]
    forged.action = "forged"
    new_hash = record_hash(_row_fields(forged))
    _tamper(
        "UPDATE accounts_auditrecord SET action = 'forged', hash = %s WHERE id = %s", [new_hash, forged.pk]
    )
    result = audit_verify()
    assert (result.ok, result.broken_seq) == (False, records[2].seq)
    assert result.reason == "prev_hash does not match the previous record"


@pytest.mark.parametrize("which", [0, 2], ids=["first", "last"])
def test_verifier_finds_a_deleted_row(which: int) -> None:
    records = _three_records()
    _tamper("DELETE FROM accounts_auditrecord WHERE id = %s", [records[which].pk])
    result = audit_verify()
    assert result.ok is False
    assert result.broken_seq == records[which].seq


def test_command_reports_ok(capsys: pytest.CaptureFixture[str]) -> None:
    _three_records()
    call_command("audit_verify")
    assert capsys.readouterr().out.strip() == "audit chain ok: 3 records"
