"""Whole-database fingerprints: "nothing changed" proven over every table, not a hand-picked few.

``db_fingerprint()`` maps each table of the public schema to ``(row count, md5 of its rows in a canonical
order)``. Two fingerprints taken around a refused request must be equal, except for tables listed in
``security.allowlists.VOLATILE_TABLES`` (each with the reason it may change on a refused request).
"""

from __future__ import annotations

from django.db import connection

from security.allowlists import VOLATILE_TABLES

Fingerprint = dict[str, tuple[int, str]]


def _tables() -> list[str]:
    with connection.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")
        return [row[0] for row in cur.fetchall() if row[0] not in VOLATILE_TABLES]


def db_fingerprint() -> Fingerprint:
    """Row count and content hash of every (non-volatile) table, read in one snapshot."""
    result: Fingerprint = {}
    with connection.cursor() as cur:
        for table in _tables():
            quoted = connection.ops.quote_name(table)
            # Table names come from pg_tables, quoted by the backend: no user input reaches this SQL.
            cur.execute(
                f"SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') "  # noqa: S608
                f"FROM {quoted} t"
            )
            count, digest = cur.fetchone()
            result[table] = (int(count), str(digest))
    return result


def fingerprint_diff(before: Fingerprint, after: Fingerprint) -> list[str]:
    """Names of the tables whose rows differ (empty when nothing changed)."""
    return sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
