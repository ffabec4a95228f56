"""JSON rendering where a ``Decimal`` can only ever leave as a string (DRF's default encoder turns it into a float)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from rest_framework.renderers import JSONRenderer

from apps.core.fields import format_decimal


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        try:
            return format_decimal(value)
        except ArithmeticError:
            # A hostile input such as 6.3e+276 (before any field has refused it) must not be a 500: exact text.
            return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    # Lazy translation strings, ErrorDetail and similar string-likes.
    return str(value)


def dumps(data: Any) -> bytes:
    return orjson.dumps(data, default=_default, option=orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS)


class DecimalSafeJSONRenderer(JSONRenderer):
    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        if data is None:
            return b""
        return dumps(data)
