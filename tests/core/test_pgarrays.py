"""``FastListDumper``: the bytes psycopg's own list dumper writes, faster; arrays round-trip through PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.adapt import PyFormat, Transformer
from psycopg.types.array import ListDumper

from apps.core.pgarrays import FastListDumper

pytestmark = pytest.mark.django_db

_NOW = datetime(2026, 11, 26, 13, 0, 1, 5, tzinfo=UTC)


def _dumps(obj: list[Any]) -> tuple[bytes, bytes]:
    connection.ensure_connection()
    tx = Transformer(connection.connection)
    ours = FastListDumper(list, tx).upgrade(obj, PyFormat.TEXT).dump(obj)
    theirs = ListDumper(list, tx).upgrade(obj, PyFormat.TEXT).dump(obj)
    assert ours is not None
    assert theirs is not None
    return bytes(ours), bytes(theirs)


@pytest.mark.parametrize(
    "obj",
    [
        [],
        [None],
        ["plain", "with space", 'quo"te', "back\\slash", "{brace}", "a,b", "", "NULL", None, '\\"mixed\\"'],
        [json.dumps({"order_id": "x", "amount": "1.50"}), json.dumps({"note": 'he said "hi" \\ bye'})],
        [_NOW, None, _NOW],
        [Decimal("1.50"), Decimal("-0.000000001"), None],
        [uuid.UUID(int=1), uuid.UUID(int=2)],
        [[1, 2], [3, None]],
        [True, False],
    ],
    ids=["empty", "null", "text", "json", "datetime", "decimal", "uuid", "nested", "bool"],
)
def test_the_bytes_are_psycopgs(obj: list[Any]) -> None:
    ours, theirs = _dumps(obj)
    assert ours == theirs


def test_django_connections_use_it() -> None:
    connection.ensure_connection()
    assert connection.connection.adapters.get_dumper(list, PyFormat.AUTO) is FastListDumper
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::text[], %s::timestamptz[]", [['a "b"', "c\\d", None, ""], [_NOW]])
        assert cursor.fetchone() == (['a "b"', "c\\d", None, ""], [_NOW])


_TEXT = st.text(
    st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=12
)  # UTF-8 text


@settings(max_examples=60, deadline=None)
@given(st.lists(st.none() | _TEXT, max_size=8))
def test_any_text_array_round_trips(values: list[str | None]) -> None:
    ours, theirs = _dumps(values)
    assert ours == theirs
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::text[]", [values])
        assert cursor.fetchone() == (values,)
