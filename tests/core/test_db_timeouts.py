"""A stalled or vanished database client cannot hold its locks forever (``brokerage.settings.base.database_options``).

The connection the platform opens carries TCP keepalives and ``tcp_user_timeout`` (a half-open socket after a
failover is closed within about a minute), and the server ends a session left idle inside a transaction, which
releases its row locks. Shown here with a real lock held by a client that stops talking mid-transaction.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import InternalError, connection, connections
from django.db.backends.postgresql.base import DatabaseWrapper

from brokerage.settings import base

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_platforms_connection_carries_keepalives_and_the_idle_transaction_bound() -> None:
    connection.ensure_connection()
    params = connection.connection.info.get_parameters()
    assert params["keepalives"] == "1"
    assert params["keepalives_idle"] == "30"
    assert params["tcp_user_timeout"] == "30000"
    with connection.cursor() as cursor:
        cursor.execute("SHOW idle_in_transaction_session_timeout")
        assert cursor.fetchone() == ("2min",)


@pytest.fixture
def stalling_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[DatabaseWrapper]:
    """A second connection, configured by the platform's own options with a 1 s idle-in-transaction bound."""
    monkeypatch.setenv("DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_S", "1")
    settings_dict: dict[str, Any] = {**connections["default"].settings_dict}
    settings_dict["OPTIONS"] = {}
    base.database_options(settings_dict)
    wrapper = DatabaseWrapper(settings_dict, alias="stalling")
    yield wrapper
    wrapper.close()


def test_a_client_that_stalls_inside_a_transaction_loses_its_session_and_its_locks(
    stalling_client: DatabaseWrapper,
) -> None:
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS test_db_timeouts_row (id int PRIMARY KEY)")
        cursor.execute("INSERT INTO test_db_timeouts_row VALUES (1) ON CONFLICT DO NOTHING")
    try:
        stalling_client.set_autocommit(False)
        with stalling_client.cursor() as cursor:
            cursor.execute("SELECT id FROM test_db_timeouts_row WHERE id = 1 FOR UPDATE")
        time.sleep(2.0)  # the client stops talking, lock held

        with (
            connection.cursor() as cursor
        ):  # someone else gets the row at once: the server ended that session
            cursor.execute("SET lock_timeout = '1s'")
            cursor.execute("SELECT id FROM test_db_timeouts_row WHERE id = 1 FOR UPDATE")
            assert cursor.fetchone() == (1,)
            cursor.execute("RESET lock_timeout")
        with (
            pytest.raises(InternalError, match="idle-in-transaction timeout"),
            stalling_client.cursor() as cursor,
        ):
            cursor.execute("SELECT 1")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS test_db_timeouts_row")
