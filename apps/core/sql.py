"""Helpers for the hand-written SQL of hot paths."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, NamedTuple, TypeVar

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.utils import CursorWrapper
from django.db.models import Model
from django.db.models.fields import AutoFieldMixin

from apps.core.copy import row_values

M = TypeVar("M", bound=Model)


def hot_cursor() -> AbstractContextManager[CursorWrapper]:
    """``connection.cursor()`` for the hot paths' hand-written statements, reused between statements.

    Django builds a cursor wrapper and a psycopg cursor for every ``connection.cursor()``: about 50 µs of CPU
    per statement here, nearly half of a short statement's client cost (docs/PERFORMANCE.md), and a REST order
    runs ten. The reused cursor is Django's own ``CursorWrapper`` (its execute wrappers, error translation and
    broken-transaction check stay), made again after a reconnect. Every block must read its results before it
    ends (no statement of another block in between: they share the cursor). While queries are logged
    (``DEBUG``, ``CaptureQueriesContext``) it is a fresh ``connection.cursor()`` as before, so they see every
    statement.
    """
    db = connections[DEFAULT_DB_ALIAS]
    if db.queries_logged:
        return db.cursor()
    # What ``connection.cursor()`` checks before making a cursor, in the same order.
    db.close_if_health_check_failed()
    db.ensure_connection()
    db.validate_thread_sharing()
    kept: CursorWrapper | None = db.__dict__.get("_hot_cursor")
    if kept is None or kept.cursor.closed or kept.cursor.connection is not db.connection:  # a reconnect
        with db.wrap_database_errors:
            kept = db.__dict__["_hot_cursor"] = db.make_cursor(db.create_cursor())
    return nullcontext(kept)  # kept open for the next statement; it goes with its connection


def select_list(model: type[Model], alias: str = "") -> str:
    """Every concrete column of ``model``, named (``alias.`` before each when given), for a raw ``SELECT``.

    Named rather than ``*``: statements are prepared on their connection (server-side binding, see
    ``brokerage.settings.base.database_options``), and a prepared ``*`` fails with "cached plan must
    not change result type" on every pooled connection once a migration adds a column.
    """
    prefix = f"{alias}." if alias else ""
    return ", ".join(f"{prefix}{f.column}" for f in model._meta.concrete_fields)


def rows_from_sql(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Every row of a hand-written statement, run on the reused hot-path cursor (``hot_cursor``)."""
    with hot_cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def models_from_sql(model: type[M], sql: str, params: Sequence[Any]) -> list[M]:
    """The rows of a hand-written ``SELECT select_list(model) ...`` as instances of ``model``.

    ``Model.from_db`` on the cursor's rows, without the ORM's statement building (``QuerySet``) or its raw-query
    column mapping (``RawQuerySet``): for the three-row ledger lock of every order, 0.39-0.48 ms of CPU per call
    against 0.88-0.96 through ``select_for_update().filter()`` and 0.57-0.64 through ``raw()``.
    """
    found = []
    for row in rows_from_sql(sql, params):
        obj = model_from_row(model, row)
        if obj is None:
            raise ValueError(f"{model.__name__}: a row without its primary key")
        found.append(obj)
    return found


def model_from_row(model: type[M], row: Sequence[Any], start: int = 0) -> M | None:
    """The ``model`` instance in ``row[start:]``'s next ``select_list(model)`` columns; None if its key is NULL.

    Values are converted as the ORM converts them (a field's ``from_db_value``, e.g. a JSON field's text), so
    one row of a join can hold several models; a NULL primary key is what a ``LEFT JOIN`` that found nothing
    returns.
    """
    plan = _plan(model)
    values = list(row[start : start + len(plan.attnames)])
    if values[plan.pk_index] is None:
        return None
    for i, converters, col in plan.converters:
        value = values[i]
        for convert in converters:
            value = convert(value, col, connection)
        values[i] = value
    return model.from_db(connection.alias, plan.attnames, values)


def insert_one(obj: Model) -> None:
    """INSERT the new instance ``obj`` as ``obj.save(force_insert=True)`` would, with one prepared statement.

    For a hot path's single row: the statement text is built once per model (``save`` compiles it every time)
    and the values are prepared as ``copy_insert`` prepares them (``apps.core.copy.row_values``: pre_save,
    then Django's preparation wherever a value is not already what it would return). No model signals are
    sent, so only for models nothing listens to. The primary key must be set by the model (a UUID default):
    an auto key would need ``RETURNING``. A constraint violation raises Django's ``IntegrityError``.
    """
    with hot_cursor() as cursor:
        cursor.execute(*insert_statement(obj))
    inserted(obj)


def insert_statement(obj: Model) -> tuple[str, list[Any]]:
    """``insert_one``'s statement and values, for a caller that runs them within a larger statement (as a CTE);
    ``inserted(obj)`` once that statement succeeded."""
    model = type(obj)
    return _insert_sql(model), row_values(model, obj)


def constraint_name(exc: BaseException) -> str | None:
    """The name of the constraint a database error (Django's, wrapping psycopg's) reports as violated."""
    diag = getattr(exc.__cause__, "diag", None)
    name = getattr(diag, "constraint_name", None)
    return name if isinstance(name, str) else None


def inserted(obj: Model) -> None:
    """Mark ``obj`` saved, as ``save()`` does after its INSERT."""
    obj._state.adding = False
    obj._state.db = connection.alias


@functools.cache
def _insert_sql(model: type[Model]) -> str:
    opts = model._meta
    if opts.parents or isinstance(opts.pk, AutoFieldMixin):
        raise TypeError(f"{model.__name__}: insert_one needs a model without parents whose key it sets")
    quote = connection.ops.quote_name
    columns = [quote(f.column) for f in opts.concrete_fields if f.column is not None]
    return (
        f"INSERT INTO {quote(opts.db_table)} ({', '.join(columns)}) "  # noqa: S608 (model meta)
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )


class _Plan(NamedTuple):
    attnames: list[str]
    pk_index: int
    converters: list[
        tuple[int, list[Callable[..., Any]], Any]
    ]  # (column index, converters, column expression)


@functools.cache
def _plan(model: type[Model]) -> _Plan:
    """``model``'s attribute names in column order and the ORM's converters of each column (once per process)."""
    opts = model._meta
    fields = opts.concrete_fields
    converters = []
    for i, f in enumerate(fields):
        col = f.get_col(opts.db_table)
        found = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
        if found:
            converters.append((i, found, col))
    pk_index = next(i for i, f in enumerate(fields) if f.primary_key)
    return _Plan([f.attname for f in fields], pk_index, converters)
