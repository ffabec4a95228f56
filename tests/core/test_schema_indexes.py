"""The schema carries no index that another index already covers (each one costs a write per row).

Two rules, checked on the migrated test database:
- no plain index on a table of ours whose key columns (and operator classes) are a leading prefix of another
  index's: the longer index answers every query the shorter one does (Django adds a single-column index to each
  foreign key, so a foreign key that leads a composite index or unique constraint must say ``db_index=False``);
- no ``varchar_pattern_ops`` (LIKE) index on the tables every order, fill and ledger entry writes to: nothing
  queries them by prefix, and Django adds one beside every unique or indexed CharField unless the uniqueness is a
  ``UniqueConstraint``.
"""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import connection

pytestmark = pytest.mark.django_db

OUR_APPS = ("accounts", "core", "kyc", "marketdata", "orders", "settlement")
WRITE_PATH_TABLES = (
    "orders_order",
    "orders_fill",
    "orders_tradeupdate",
    "settlement_cashhold",
    "settlement_sharereservation",
    "settlement_journalentry",
    "settlement_posting",
    "settlement_settlementobligation",
    "settlement_taxlot",
    "core_storedevent",
    "core_inboxrecord",
    "kyc_amltradeobservation",
)

_INDEXES = """
SELECT c.relname, i.relname, x.indisunique, x.indpred IS NOT NULL,
       string_to_array(x.indkey::text, ' ')::int[], string_to_array(x.indclass::text, ' ')::oid[]
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relname = ANY(%s)
"""


def _our_tables() -> list[str]:
    """Tables of our apps' models, without the M2M tables Django creates for them (their indexes are Django's)."""
    return [
        model._meta.db_table
        for label in OUR_APPS
        for model in apps.get_app_config(label).get_models(include_auto_created=False)
        if model._meta.managed
    ]


def test_no_index_is_a_prefix_of_another_on_our_tables() -> None:
    tables = _our_tables()
    with connection.cursor() as cursor:
        cursor.execute(_INDEXES, [tables])
        rows = cursor.fetchall()
    assert {r[0] for r in rows} >= {"orders_order", "settlement_posting"}  # the query sees our tables
    redundant = []
    for table, name, unique, partial, keys, classes in rows:
        if unique or partial:
            continue
        for other_table, other, _u, other_partial, other_keys, other_classes in rows:
            if other_table != table or other == name or other_partial or len(other_keys) < len(keys):
                continue
            if other_keys[: len(keys)] == keys and other_classes[: len(classes)] == classes:
                redundant.append(f"{table}.{name} (covered by {other})")
    assert redundant == []


def test_no_like_index_on_the_write_path_tables() -> None:
    assert set(WRITE_PATH_TABLES) <= set(_our_tables())
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = ANY(%s) "
            "AND indexdef LIKE '%%pattern_ops%%'",
            [list(WRITE_PATH_TABLES)],
        )
        assert cursor.fetchall() == []
