"""The runtime database role cannot rewrite the audit trail: PostgreSQL refuses it by privilege, not by trigger.

Real PostgreSQL. ``db_roles_apply`` runs as the owner (the test settings' only role) and creates
``<test database>_app``; the tests then connect as that role. Creating a role needs CREATEROLE on the owner
role (``scripts/services.sh`` grants it to the local development role); where the server does not, the tests
that need the role fail with that reason rather than pass unseen.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection, transaction
from psycopg import errors, sql

from apps.accounts.audit import audit_record, audit_verify
from apps.accounts.dbroles import db_roles_apply, runtime_role_name
from apps.accounts.models import AuditChainHead, AuditRecord
from apps.core.errors import Conflict
from tests.accounts.factories import customer

pytestmark = pytest.mark.django_db(transaction=True)


def _can_create_roles() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user")
        return bool(cursor.fetchone()[0])


@pytest.fixture
def runtime_role() -> Iterator[tuple[str, str]]:
    if not _can_create_roles():
        pytest.fail(
            "the owner role lacks CREATEROLE, so the runtime role cannot be created here "
            "(scripts/services.sh postgres start grants it)"
        )
    password = secrets.token_urlsafe(16)
    result = db_roles_apply(password=password)
    assert (result.role, result.password_set) == (runtime_role_name(), True)
    yield result.role, password
    # Leave no role behind: revoke what db_roles granted (DROP OWNED BY would need membership), then drop it.
    ident = sql.Identifier(result.role)
    statements = [
        sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(ident),
        sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {}").format(ident),
        sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM {}").format(ident),
        sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM {}").format(ident),
        sql.SQL("REVOKE ALL ON SCHEMA public FROM {}").format(ident),
        sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(sql.Identifier(result.database), ident),
        sql.SQL("DROP ROLE {}").format(ident),
    ]
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement.as_string(cursor.connection))


def _connect(role: str, password: str) -> psycopg.Connection[tuple[object, ...]]:
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"], port=db["PORT"], dbname=db["NAME"], user=role, password=password, autocommit=True
    )


@contextmanager
def _django_connected_as(role: str, password: str) -> Iterator[None]:
    """Point Django's default connection at ``role`` so the ORM and services run as it."""
    saved = connection.settings_dict["USER"], connection.settings_dict["PASSWORD"]
    connection.close()
    connection.settings_dict["USER"], connection.settings_dict["PASSWORD"] = role, password
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["USER"], connection.settings_dict["PASSWORD"] = saved


def _one_record() -> AuditRecord:
    user = customer()
    return audit_record(actor=user, action="test.original", target=user, before=None, after={"n": 1})


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("UPDATE accounts_auditrecord SET action = 'forged'", id="update"),
        pytest.param("DELETE FROM accounts_auditrecord", id="delete"),
        pytest.param("TRUNCATE accounts_auditrecord", id="truncate"),
        pytest.param("ALTER TABLE accounts_auditrecord DISABLE TRIGGER USER", id="disable-all-triggers"),
        pytest.param(
            "ALTER TABLE accounts_auditrecord DISABLE TRIGGER accounts_auditrecord_no_update",
            id="disable-one-trigger",
        ),
        pytest.param(
            "DROP TRIGGER accounts_auditrecord_no_delete ON accounts_auditrecord", id="drop-trigger"
        ),
        pytest.param("DELETE FROM accounts_auditchainhead", id="delete-chain-head"),
        pytest.param("TRUNCATE accounts_auditchainhead", id="truncate-chain-head"),
    ],
)
def test_runtime_role_is_refused_by_privilege(runtime_role: tuple[str, str], statement: str) -> None:
    record = _one_record()
    with _connect(*runtime_role) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(statement)
    record.refresh_from_db()
    assert record.action == "test.original"
    assert AuditRecord.objects.count() == 1
    assert AuditChainHead.objects.get(pk=1).seq == record.seq
    assert audit_verify().ok


def test_runtime_role_appends_through_the_audit_service(runtime_role: tuple[str, str]) -> None:
    first = _one_record()  # as the owner
    with _django_connected_as(*runtime_role):
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user")
            assert cursor.fetchone()[0] == runtime_role[0]
        user = customer()  # ordinary DML on other tables works
        with transaction.atomic():
            second = audit_record(actor=user, action="test.as_runtime", target=user, before=None, after={})
        result = audit_verify()
    assert (second.seq, second.prev_hash) == (first.seq + 1, first.hash)
    assert (result.ok, result.checked) == (True, 2)
    assert list(AuditRecord.objects.order_by("seq").values_list("action", flat=True)) == [
        "test.original",
        "test.as_runtime",
    ]


def test_future_tables_are_granted_by_default(runtime_role: tuple[str, str]) -> None:
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE h1_future_table (id bigint GENERATED BY DEFAULT AS IDENTITY, note text)")
    try:
        with _connect(*runtime_role) as conn:
            conn.execute("INSERT INTO h1_future_table (note) VALUES ('x')")
            conn.execute("UPDATE h1_future_table SET note = 'y'")
            row = conn.execute("SELECT note FROM h1_future_table").fetchone()
            assert row == ("y",)
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute("TRUNCATE h1_future_table")  # DML only: TRUNCATE is never granted
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE h1_future_table")


def test_command_is_idempotent_and_reports(
    runtime_role: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("H1_APP_PASSWORD", runtime_role[1])
    out = io.StringIO()
    call_command("db_roles", "--password-env", "H1_APP_PASSWORD", stdout=out)
    owner = connection.settings_dict["USER"]
    assert out.getvalue() == (
        f"role {runtime_role[0]} updated on {connection.settings_dict['NAME']} "
        f"(owner {owner}; audit trail INSERT/SELECT only; login password set)\n"
    )
    with _connect(*runtime_role) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("DELETE FROM accounts_auditrecord")


def test_owner_cannot_be_the_runtime_role() -> None:
    owner = str(connection.settings_dict["USER"])
    with pytest.raises(Conflict, match=f"role {owner} is, or is a member of, the table owner {owner}"):
        db_roles_apply(role=owner)
