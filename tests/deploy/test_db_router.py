"""PrimaryReplicaRouter against a real streaming replica (see conftest.py for how the standby is made).

Each test shows where a query actually ran: ``pg_is_in_recovery()`` is true only on the standby, and a row
written while replay is paused exists on the primary only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connections, transaction
from django.db.utils import InternalError, NotSupportedError
from django.test import override_settings

from brokerage import db_router
from brokerage.db_router import (
    PrimaryReplicaRouter,
    read_alias,
    replica_lag_measure,
    use_primary,
    use_replica,
)
from tests.deploy.conftest import standby_sql


def _routing(aliases: dict[str, str], **overrides: Any) -> dict[str, Any]:
    return {
        "PRIMARY_ALIAS": aliases["primary"],
        "REPLICA_ALIAS": aliases["replica"],
        "READ_MODELS": ["contenttypes"],
        "MAX_LAG_SECONDS": 3600.0,
        "MAX_LAG_BYTES": 1 << 40,
        "LAG_CHECK_INTERVAL_S": 0.0,
        "PIN_AFTER_WRITE_S": 3600.0,
        **overrides,
    }


@pytest.fixture
def routed(
    streaming_replica: dict[str, str], django_db_blocker: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The router installed for the ORM, fresh routing context and lag cache, the standby replaying."""
    from django.db import router

    monkeypatch.setattr(router, "routers", [PrimaryReplicaRouter()])
    db_router.lag_cache.clear()
    with django_db_blocker.unblock(), db_router.routing_scope():
        yield streaming_replica
    standby_sql("SELECT pg_wal_replay_resume()", streaming_replica)
    db_router.lag_cache.clear()


def _in_recovery(alias: str) -> bool:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        return bool(cursor.fetchone()[0])


def _caught_up(aliases: dict[str, str]) -> None:
    """Wait (bounded by the standby's own replay, no sleep threshold) until the replica replayed the primary."""
    with connections[aliases["primary"]].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()::text")
        target = cursor.fetchone()[0]
    with connections[aliases["replica"]].cursor() as cursor:
        for _ in range(2000):
            cursor.execute("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s::pg_lsn) >= 0", [target])
            if cursor.fetchone()[0]:
                return
            cursor.execute("SELECT pg_sleep(0.01)")
    raise AssertionError("standby did not replay the primary's WAL")


def _new_type() -> ContentType:
    return ContentType.objects.create(app_label="rt", model=f"m{uuid.uuid4().hex[:12]}")


def test_standby_is_a_real_streaming_replica(routed: dict[str, str]) -> None:
    assert _in_recovery(routed["replica"]) is True
    assert _in_recovery(routed["primary"]) is False
    with (
        pytest.raises((InternalError, NotSupportedError)) as excinfo,
        connections[routed["replica"]].cursor() as c,
    ):
        c.execute("CREATE TABLE must_fail (id int)")
    assert "read-only transaction" in str(excinfo.value)


def test_listed_model_reads_go_to_the_replica_and_see_replicated_rows(routed: dict[str, str]) -> None:
    with override_settings(REPLICA_ROUTING=_routing(routed, PIN_AFTER_WRITE_S=0.0)):
        created = _new_type()
        _caught_up(routed)
        qs = ContentType.objects.filter(pk=created.pk)
        assert qs.db == routed["replica"]
        assert _in_recovery(qs.db) is True
        assert list(qs.values_list("model", flat=True)) == [created.model]


def test_unlisted_model_reads_go_to_the_primary(routed: dict[str, str]) -> None:
    with override_settings(REPLICA_ROUTING=_routing(routed, READ_MODELS=["marketdata"])):
        assert ContentType.objects.all().db == routed["primary"]
        with use_replica():  # admin lists opt in explicitly
            assert ContentType.objects.all().db == routed["replica"]


def test_writes_go_to_the_primary(routed: dict[str, str]) -> None:
    with override_settings(REPLICA_ROUTING=_routing(routed)):
        created = _new_type()
        assert created._state.db == routed["primary"]
        assert PrimaryReplicaRouter().db_for_write(ContentType) == routed["primary"]
        assert ContentType.objects.using(routed["primary"]).filter(pk=created.pk).count() == 1


@pytest.mark.parametrize("how", ["pin_after_write", "use_primary", "inside_transaction"])
def test_read_your_writes_go_to_the_primary_while_the_replica_is_stale(
    routed: dict[str, str], how: str
) -> None:
    standby_sql("SELECT pg_wal_replay_pause()", routed)
    with override_settings(
        REPLICA_ROUTING=_routing(routed, PIN_AFTER_WRITE_S=0.0 if how != "pin_after_write" else 3600.0)
    ):
        with db_router.routing_scope():
            created = _new_type()
            if how == "pin_after_write":
                seen = ContentType.objects.filter(pk=created.pk).exists()
                where = ContentType.objects.all().db
            elif how == "use_primary":
                with use_primary():
                    seen = ContentType.objects.filter(pk=created.pk).exists()
                    where = ContentType.objects.all().db
            else:
                with transaction.atomic(using=routed["primary"]):
                    seen = ContentType.objects.filter(pk=created.pk).exists()
                    where = ContentType.objects.all().db
        assert (where, seen) == (routed["primary"], True)
        # The same read without the pin goes to the (stale) replica and does not see the row: proof of routing.
        with db_router.routing_scope():
            qs = ContentType.objects.filter(pk=created.pk)
            assert (qs.db, qs.exists()) == (routed["replica"], False)


def test_lagging_replica_is_bypassed(routed: dict[str, str]) -> None:
    standby_sql("SELECT pg_wal_replay_pause()", routed)
    with override_settings(REPLICA_ROUTING=_routing(routed, MAX_LAG_BYTES=0, MAX_LAG_SECONDS=0.0)):
        with db_router.routing_scope(), use_primary():
            created = _new_type()
        lag = replica_lag_measure(primary=routed["primary"], replica=routed["replica"])
        assert lag.in_recovery is True
        assert lag.replay_paused is True
        assert lag.lag_bytes > 0
        with db_router.routing_scope():
            qs = ContentType.objects.filter(pk=created.pk)
            assert qs.db == routed["primary"]
            assert qs.exists() is True
    standby_sql("SELECT pg_wal_replay_resume()", routed)
    _caught_up(routed)
    db_router.lag_cache.clear()
    with (
        override_settings(REPLICA_ROUTING=_routing(routed, MAX_LAG_BYTES=0, MAX_LAG_SECONDS=0.0)),
        db_router.routing_scope(),
    ):
        assert read_alias(ContentType) == routed["replica"]


def test_unreachable_replica_falls_back_to_the_primary(routed: dict[str, str]) -> None:
    settings_before = dict(connections.settings[routed["replica"]])
    connections[routed["replica"]].close()
    connections.settings[routed["replica"]]["PORT"] = 1  # nothing listens there
    del connections[routed["replica"]]
    try:
        with override_settings(REPLICA_ROUTING=_routing(routed)):
            assert read_alias(ContentType) == routed["primary"]
    finally:
        connections.settings[routed["replica"]] = settings_before
        del connections[routed["replica"]]
