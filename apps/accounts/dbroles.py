"""Two PostgreSQL roles, so the database itself keeps the audit trail append-only.

The *owner* role owns every table (it runs ``migrate``); the *runtime* role (``<database>_app`` unless
configured) is what the web, worker, consumer and engine processes connect as. The runtime role gets DML on
every table and sequence of the ``public`` schema, now and for tables the owner creates later (default
privileges), except on the audit trail:

- ``accounts_auditrecord``: SELECT and INSERT only. UPDATE, DELETE and TRUNCATE are revoked, and since the
  runtime role does not own the table it cannot ``ALTER TABLE ... DISABLE TRIGGER`` or drop it either.
- ``accounts_auditchainhead``: SELECT, INSERT, UPDATE (appending moves the head), no DELETE or TRUNCATE.

The append-only triggers of migration 0004 stay: they also stop the owner from editing rows by accident.

Invariants:
- :func:`db_roles_apply` is idempotent: run it after every ``migrate`` (it re-applies the revokes).
- It refuses a runtime role that is the owner, a superuser, or a member of the owner (each would inherit the
  owner's rights and defeat the separation).
- It runs as the owner (or a member of it: default privileges are set ``FOR ROLE`` the audit table's owner) and
  needs CREATEROLE to create the runtime role or set its password; granting to an existing role needs neither.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import connections, transaction
from psycopg import sql

from apps.accounts.models import AuditChainHead, AuditRecord
from apps.core.errors import Conflict

__all__ = ["DbRolesResult", "db_roles_apply", "runtime_role_name"]

RUNTIME_DML = ("SELECT", "INSERT", "UPDATE", "DELETE")
AUDIT_RECORD_REVOKED = ("UPDATE", "DELETE", "TRUNCATE")
AUDIT_HEAD_REVOKED = ("DELETE", "TRUNCATE")


@dataclass(frozen=True)
class DbRolesResult:
    role: str
    owner: str
    database: str
    created: bool
    password_set: bool


def runtime_role_name(*, using: str = "default") -> str:
    """``DATABASE_APP_ROLE`` if set, else ``<database name>_app``."""
    configured = getattr(settings, "DATABASE_APP_ROLE", "")
    return configured or f"{connections[using].settings_dict['NAME']}_app"


def _privileges(names: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL(name) for name in names)


def db_roles_apply(
    *, role: str | None = None, password: str | None = None, using: str = "default"
) -> DbRolesResult:
    """Create (if missing) the runtime role and (re)apply its grants on the database behind ``using``.

    ``password`` makes the role LOGIN with that password; without it a new role is NOLOGIN (an operator
    enables login, e.g. for IAM authentication) and an existing role's login settings are left alone.
    """
    role = role or runtime_role_name(using=using)
    connection = connections[using]
    database = str(connection.settings_dict["NAME"])
    audit_table = AuditRecord._meta.db_table
    head_table = AuditChainHead._meta.db_table
    ident = sql.Identifier(role)
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename = %s", [audit_table]
        )
        row = cursor.fetchone()
        if row is None:
            raise Conflict(f"{audit_table} does not exist; run migrate first")
        owner = str(row[0])
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role])
        existing = cursor.fetchone()
        created = existing is None
        if created:
            cursor.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(ident).as_string(cursor.connection))
        elif existing[0]:
            raise Conflict(f"role {role} is a superuser; the runtime role must not be")
        cursor.execute("SELECT %s = %s OR pg_has_role(%s, %s, 'MEMBER')", [role, owner, role, owner])
        if cursor.fetchone()[0]:
            raise Conflict(f"role {role} is, or is a member of, the table owner {owner}")
        owner_ident = sql.Identifier(owner)
        statements: list[sql.Composable] = []
        if password is not None:
            statements.append(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(ident, sql.Literal(password)))
        statements += [
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), ident),
            sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(ident),
            sql.SQL("GRANT {} ON ALL TABLES IN SCHEMA public TO {}").format(_privileges(RUNTIME_DML), ident),
            sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(ident),
            # Future tables: those the owner creates (migrations), whoever runs this command.
            sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT {} ON TABLES TO {}").format(
                owner_ident, _privileges(RUNTIME_DML), ident
            ),
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {}"
            ).format(owner_ident, ident),
            sql.SQL("REVOKE {} ON {} FROM {}").format(
                _privileges(AUDIT_RECORD_REVOKED), sql.Identifier(audit_table), ident
            ),
            sql.SQL("REVOKE {} ON {} FROM {}").format(
                _privileges(AUDIT_HEAD_REVOKED), sql.Identifier(head_table), ident
            ),
        ]
        for statement in statements:
            cursor.execute(statement.as_string(cursor.connection))
    return DbRolesResult(
        role=role, owner=owner, database=database, created=created, password_set=password is not None
    )
