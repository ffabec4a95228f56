"""One error hierarchy, mapped by one DRF exception handler to one JSON error shape.

Every error body has Alpaca's required pair ``{"code": <int>, "message": "<text>"}`` plus our machine-readable
extras: ``error`` (a stable snake_case code), and where relevant ``field``, ``rule`` and ``details``.
Codes follow Alpaca's 8-digit convention: the HTTP status, then a 5-digit reason.
No input may produce a 500: anything unexpected is logged with the request id and answered with a generic 500
body that leaks nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.markettime import SUPPORTED_END, SUPPORTED_START, CalendarRangeError

logger = logging.getLogger(__name__)


class BrokerageError(Exception):
    """Base of every error a client may see. Subclasses set ``status``, ``code`` and ``error``."""

    status: int = 400
    code: int = 40010000
    error: str = "bad_request"
    default_message: str = "The request is invalid."

    def __init__(
        self,
        message: str | None = None,
        *,
        field: str | None = None,
        rule: str | None = None,
        details: dict[str, Any] | None = None,
        error: str | None = None,
        code: int | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.field = field
        self.rule = rule
        self.details = details or {}
        if error is not None:
            self.error = error
        if code is not None:
            self.code = code
        super().__init__(self.message)

    def as_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message, "error": self.error}
        if self.field is not None:
            body["field"] = self.field
        if self.rule is not None:
            body["rule"] = self.rule
        if self.details:
            body["details"] = self.details
        return body


class ValidationError(BrokerageError):
    status = 422
    code = 42210000
    error = "invalid_input"
    default_message = "The input failed validation."


class MalformedRequest(BrokerageError):
    status = 400
    code = 40010001
    error = "malformed_request"
    default_message = "The request body could not be parsed."


class AuthenticationFailed(BrokerageError):
    status = 401
    code = 40110000
    error = "unauthorized"
    default_message = "Authentication failed."


class PermissionDenied(BrokerageError):
    status = 403
    code = 40310000
    error = "forbidden"
    default_message = "You do not have permission to perform this action."


class NotFound(BrokerageError):
    status = 404
    code = 40410000
    error = "not_found"
    default_message = "Not found."


class Conflict(BrokerageError):
    status = 409
    code = 40910000
    error = "conflict"
    default_message = "The request conflicts with the current state."


class IdempotencyKeyInUse(Conflict):
    error = "idempotency_key_in_progress"
    default_message = "A request with this Idempotency-Key is still in progress."


class IdempotencyKeyReused(ValidationError):
    error = "idempotency_key_reused"
    default_message = "This Idempotency-Key was already used with a different request."


class BusinessRuleViolation(BrokerageError):
    """A well-formed request that a business rule refuses (risk, balance, state)."""

    status = 403
    code = 40310000
    error = "rule_violation"
    default_message = "The request was refused by a business rule."


class InsufficientFunds(BusinessRuleViolation):
    error = "insufficient_buying_power"
    default_message = "Insufficient buying power."


class NotCancelable(BrokerageError):
    status = 422
    code = 42210000
    error = "not_cancelable"
    default_message = "The order is not cancelable."


class Throttled(BrokerageError):
    status = 429
    code = 42910000
    error = "rate_limited"
    default_message = "Too many requests."


class ServiceUnavailable(BrokerageError):
    status = 503
    code = 50310000
    error = "service_unavailable"
    default_message = "A dependency is unavailable; try again shortly."


_DRF_MAP: dict[type[drf_exceptions.APIException], tuple[int, str]] = {
    drf_exceptions.NotAuthenticated: (40110000, "unauthorized"),
    drf_exceptions.AuthenticationFailed: (40110000, "unauthorized"),
    drf_exceptions.PermissionDenied: (40310000, "forbidden"),
    drf_exceptions.NotFound: (40410000, "not_found"),
    drf_exceptions.MethodNotAllowed: (40510000, "method_not_allowed"),
    drf_exceptions.NotAcceptable: (40610000, "not_acceptable"),
    drf_exceptions.UnsupportedMediaType: (41510000, "unsupported_media_type"),
    drf_exceptions.Throttled: (42910000, "rate_limited"),
    drf_exceptions.ParseError: (40010001, "malformed_request"),
}


def _first_field_error(detail: Any, prefix: str = "") -> tuple[str | None, str, str]:
    """Walk a DRF ValidationError detail to its first (field path, message, code)."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key == "non_field_errors":
                path = prefix or ""
            field, message, code = _first_field_error(value, path)
            return field or None, message, code
    if isinstance(detail, list) and detail:
        first = detail[0]
        if isinstance(first, dict | list):
            return _first_field_error(first, f"{prefix}[0]" if prefix else "[0]")
        return prefix or None, str(first), getattr(first, "code", "invalid")
    return prefix or None, str(detail), getattr(detail, "code", "invalid")


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler: every error becomes ``{"code", "message", "error", ...}``."""
    if isinstance(exc, BrokerageError):
        return Response(exc.as_body(), status=exc.status)
    if isinstance(exc, Http404):
        return Response(NotFound().as_body(), status=404)
    if isinstance(exc, DjangoPermissionDenied):
        return Response(PermissionDenied().as_body(), status=403)
    if isinstance(exc, drf_exceptions.ValidationError):
        field, message, code = _first_field_error(exc.detail)
        err = ValidationError(
            f"{field}: {message}" if field else message,
            field=field,
            error=str(code) if code else "invalid_input",
            details={"errors": exc.detail},
        )
        return Response(err.as_body(), status=err.status)
    if isinstance(exc, CalendarRangeError):
        # A date the market calendar does not cover (a query far in the past or future): the client's input.
        err = ValidationError(
            str(exc),
            error="date_out_of_calendar_range",
            rule="market_calendar_range",
            details={"start": SUPPORTED_START.isoformat(), "end": SUPPORTED_END.isoformat()},
        )
        return Response(err.as_body(), status=err.status)
    if isinstance(exc, drf_exceptions.APIException):
        api_code, api_error = _DRF_MAP.get(type(exc), (exc.status_code * 100000, "error"))
        body: dict[str, Any] = {"code": api_code, "message": str(exc.detail), "error": api_error}
        response = Response(body, status=exc.status_code)
        wait = getattr(exc, "wait", None)
        if isinstance(exc, drf_exceptions.Throttled) and wait is not None:
            response["Retry-After"] = str(int(wait) + 1)
        return response
    request: Request | None = context.get("request")
    logger.exception(
        "unhandled error",
        extra={"path": getattr(request, "path", None)},
    )
    return Response(
        {"code": 50010000, "message": "Internal error.", "error": "internal_error"},
        status=500,
    )
