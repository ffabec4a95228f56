"""Statements are prepared on their connection (server-side binding), and the hand-written SELECTs of the hot path
survive a migration that adds a column while connections stay open."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
from django.conf import settings
from django.db import connection, transaction

from apps.orders.models import Asset
from apps.orders.services import assets_key_share

pytestmark = pytest.mark.django_db(transaction=True)


def _prepared_count() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        row = cursor.fetchone()
    return int(row[0])


def test_a_statement_run_past_the_threshold_is_prepared_on_its_connection() -> None:
    options = settings.DATABASES["default"]["OPTIONS"]
    assert options["server_side_binding"] is True
    threshold = options["prepare_threshold"]
    Asset.objects.create(symbol="PREP", name="Prepared", exchange="NYSE", reference_price=Decimal("10"))
    before = _prepared_count()
    for _ in range(threshold + 1):
        with transaction.atomic():
            assert set(assets_key_share(symbols=["prep"])) == {"PREP"}
    assert _prepared_count() > before


def test_the_asset_lock_read_still_works_after_a_column_is_added_under_it() -> None:
    Asset.objects.create(symbol="ALTR", name="Altered", exchange="NYSE", reference_price=Decimal("10"))
    threshold = settings.DATABASES["default"]["OPTIONS"]["prepare_threshold"]
    for _ in range(threshold + 1):  # prepared by now
        with transaction.atomic():
            assets_key_share(symbols=["ALTR"])
    # A migration runs in another process: psycopg forgets its own prepared statements after an ALTER on the
    # same connection, so the column is added on a connection of its own.
    _ddl("ALTER TABLE orders_asset ADD COLUMN prepared_probe integer")
    try:
        with transaction.atomic():
            assert assets_key_share(symbols=["ALTR"])["ALTR"].name == "Altered"
    finally:
        _ddl("ALTER TABLE orders_asset DROP COLUMN prepared_probe")


def _ddl(sql: str) -> None:
    params = connection.get_connection_params()
    with psycopg.connect(
        **{k: v for k, v in params.items() if k != "cursor_factory"}, autocommit=True
    ) as other:
        other.execute(sql)
