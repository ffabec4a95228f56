"""OpenAPI post-processing: every operation documents the error answers the core exception handler can give.

All errors share one body (``apps.core.errors``: ``code``, ``message``, ``error`` and optional ``field``, ``rule``,
``details``), so the schema names them once as ``Error`` and lists the statuses any operation may answer.
"""

from __future__ import annotations

from typing import Any

ERROR_STATUSES = {
    "400": "Malformed request",
    "401": "Not authenticated",
    "403": "Forbidden or a business rule refused it",
    "404": "Not found (including other accounts' objects)",
    "405": "Method not allowed",
    "409": "Conflict",
    "413": "Body too large",
    "415": "Unsupported media type",
    "422": "Invalid input",
    "429": "Rate limited or locked out",
}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "integer"},
        "message": {"type": "string"},
        "error": {"type": "string"},
        "field": {"type": "string"},
        "rule": {"type": "string"},
        "details": {"type": "object"},
    },
}


def error_responses_hook(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for item in result.get("paths", {}).values():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            for status, text in ERROR_STATUSES.items():
                responses.setdefault(
                    status, {"description": text, "content": {"application/json": {"schema": ref}}}
                )
    return result
