"""Strict JSON parsing: numbers become exact ``Decimal`` from their literal text, never a binary float.

Rejected outright (400 ``malformed_request``): invalid UTF-8, duplicate keys at any depth (``{"qty":1,"qty":2}``
must not silently keep the last), ``NaN``/``Infinity``, nesting deeper than ``MAX_DEPTH``, NUL characters
(PostgreSQL text cannot store them), and bodies over the size limit. Field-level rules (ASCII digits only, no
exponent, precision) are the fields' job: see ``apps.core.fields``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, NoReturn

from django.conf import settings
from rest_framework.parsers import BaseParser

from apps.core.errors import MalformedRequest

MAX_DEPTH = 16


class DuplicateKeyError(ValueError):
    pass


class ExponentDecimal(Decimal):
    """A JSON number written with an exponent (``1e3``): exact, but refused by money fields."""


def _parse_number(text: str) -> Decimal:
    if "e" in text or "E" in text:
        return ExponentDecimal(text)
    return Decimal(text)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKeyError(key)
        result[key] = value
    return result


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number")


def _depth(value: Any, limit: int) -> int:
    """Iterative depth measure, so a hostile body cannot exhaust the stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest = 0
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return depth
        deepest = max(deepest, depth)
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest


def loads_strict(raw: bytes | str) -> Any:
    """Parse JSON exactly: Decimal numbers, no duplicate keys, no NaN, bounded depth."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise MalformedRequest("The body is not valid UTF-8.", error="invalid_encoding") from exc
    # A quick bracket count bounds depth before the recursive C parser ever sees the text.
    if text.count("[") + text.count("{") > 10_000:
        raise MalformedRequest("The body nests too many containers.", error="too_deep")
    try:
        value = json.loads(
            text,
            parse_float=_parse_number,
            parse_int=int,
            parse_constant=_reject_constant,
            object_pairs_hook=_reject_duplicates,
        )
    except DuplicateKeyError as exc:
        raise MalformedRequest(
            f"Duplicate key {exc.args[0]!r} in the JSON body.", field=str(exc.args[0]), error="duplicate_key"
        ) from exc
    except RecursionError as exc:
        raise MalformedRequest("The body nests too deeply.", error="too_deep") from exc
    except ValueError as exc:
        raise MalformedRequest(f"Malformed JSON: {exc}", error="malformed_json") from exc
    if _depth(value, MAX_DEPTH) > MAX_DEPTH:
        raise MalformedRequest(f"The body nests deeper than {MAX_DEPTH} levels.", error="too_deep")
    if "\x00" in text or "\\u0000" in text:
        # PostgreSQL text cannot hold NUL: refused here, not as a database error (a 500) deep in a service.
        raise MalformedRequest("The body contains a NUL character.", error="nul_character")
    return value


class StrictJSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise MalformedRequest("The body is too large.", error="body_too_large")
        if not raw.strip():
            return {}
        return loads_strict(raw)
