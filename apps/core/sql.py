"""Helpers for the hand-written SQL of hot paths."""

from __future__ import annotations

from django.db.models import Model


def select_list(model: type[Model], alias: str = "") -> str:
    """Every concrete column of ``model``, named (``alias.`` before each when given), for a raw ``SELECT``.

    Named rather than ``*``: statements are prepared on their connection (server-side binding, see
    ``brokerage.settings.base.prepared_statement_options``), and a prepared ``*`` fails with "cached plan must
    not change result type" on every pooled connection once a migration adds a column.
    """
    prefix = f"{alias}." if alias else ""
    return ", ".join(f"{prefix}{f.column}" for f in model._meta.concrete_fields)
