"""``copy_insert``: many rows of one model written with ONE ``COPY ... FROM STDIN`` in the caller's transaction.

``QuerySet.bulk_create`` on PostgreSQL builds one multi-row ``INSERT`` with every value quoted into the SQL text
client-side and parsed again by the server, and asks for the keys back (``RETURNING``). COPY streams the values
instead: in ``bench/ingest.py``'s writer group, COPY of 1,000 fill-shaped rows ran about 5x a multi-row INSERT.
COPY checks constraints and fires triggers as INSERT does, so every database invariant still holds.

Use it only where nothing reads the new rows' auto primary keys afterwards: they come from the column default
and are NOT set on the objects (client-side defaults such as UUIDs are, since the model set them). No
``ON CONFLICT``: a duplicate fails the whole statement, as ``bulk_create`` without ``ignore_conflicts`` does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from django.db import connection
from django.db.models import AutoField, BigAutoField, Model, SmallAutoField

_AUTO = (AutoField, BigAutoField, SmallAutoField)


def copy_insert(model: type[Model], objs: Sequence[Model]) -> int:
    """Insert ``objs`` (instances of ``model``) with one COPY; returns how many rows were written."""
    if not objs:
        return 0
    opts = model._meta
    fields = [f for f in opts.concrete_fields if not (f.primary_key and isinstance(f, _AUTO))]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields if f.column is not None)
    sql = f"COPY {quote(opts.db_table)} ({columns}) FROM STDIN"
    start = time.monotonic()
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for obj in objs:
            copy.write_row([f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields])
    if connection.queries_logged:  # as Django's debug cursor records an execute (COPY bypasses it)
        connection.queries_log.append(
            {"sql": f"{sql} -- {len(objs)} rows", "time": f"{time.monotonic() - start:.3f}"}
        )
    return len(objs)
