"""Request context (request id, correlation id), Prometheus request metrics, and NUL-byte refusal."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import Counter, Histogram

from apps.core.logging import correlation_id_var, request_id_var

_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}", re.ASCII)

REQUESTS = Counter("http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


def _header_id(request: HttpRequest, name: str) -> str | None:
    value = request.headers.get(name)
    return value if value and _SAFE_ID.fullmatch(value) else None


class RequestContextMiddleware:
    """Accepts a well-formed ``X-Request-ID``/``X-Correlation-ID`` or makes one; echoes both on the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = _header_id(request, "X-Request-ID") or uuid.uuid4().hex
        correlation_id = _header_id(request, "X-Correlation-ID") or request_id
        request.request_id = request_id  # type: ignore[attr-defined]
        request.correlation_id = correlation_id  # type: ignore[attr-defined]
        t1 = request_id_var.set(request_id)
        t2 = correlation_id_var.set(correlation_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(t1)
            correlation_id_var.reset(t2)
        response["X-Request-ID"] = request_id
        response["X-Correlation-ID"] = correlation_id
        return response


class HealthProbeMiddleware:
    """Answers /healthz and /readyz before host validation.

    Load-balancer probes address the task by IP, which is not in ALLOWED_HOSTS; the probes reveal nothing and
    change nothing, so they are served without ``request.get_host()`` ever being called.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method in ("GET", "HEAD") and request.path in ("/healthz", "/readyz"):
            from apps.core import health

            return health.healthz(request) if request.path == "/healthz" else health.readyz(request)
        return self.get_response(request)


class MetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        start = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None and match.route else "unmatched"
        LATENCY.labels(request.method, route).observe(time.perf_counter() - start)
        REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        return response


class NulByteRejectMiddleware:
    """Refuses a NUL character in the path or the query string (400, the core error shape).

    PostgreSQL text cannot hold NUL, so such an id or filter would reach the database as a DataError (a 500).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path or "%00" in query or "\x00" in query:
            from apps.core.errors import MalformedRequest

            exc = MalformedRequest("The request contains a NUL character.", error="nul_character")
            return JsonResponse(exc.as_body(), status=exc.status)
        return self.get_response(request)
