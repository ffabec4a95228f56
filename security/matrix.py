"""The access-control matrix, generated from the URL conf.

It reuses the route walk of ``tests.accounts.test_object_access`` (every ``v1/``/``v2/`` route with a path
parameter, public reference data excluded) and adds what that test cannot know: which parameter names carry an
*owned* object id, and a valid body per mutating verb so that validation passes and only ownership can refuse.
A new object route whose parameter is in neither ``OWNED_PARAMS`` nor ``NON_OBJECT_PARAMS`` fails the matrix
(``unclassified_params``): someone must decide what it is.
"""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RoutePattern

# Path parameters that name an object owned by one customer; the matrix fills them with user A's ids.
OWNED_PARAMS: tuple[str, ...] = ("key_id", "order_id", "transfer_id", "symbol", "fill_id")

# Path parameters that are not object ids, with the reason the matrix does not try A's value for them.
NON_OBJECT_PARAMS: dict[str, str] = {
    "activity_type": "a filter over the caller's own activities (FILL, CSD, ...), never another account's data",
}

# A valid body per (route, verb), so the request is refused for ownership, not for validation.
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("v2/orders/<str:order_id>", "patch"): {"limit_price": "91"},
}

# Object ids passed as query parameters rather than path segments.
QUERY_OBJECT_ROUTES: dict[str, str] = {"/v2/orders:by_client_order_id": "client_order_id"}


def list_routes() -> list[str]:
    """Every ``v1/``/``v2/`` route without a path parameter that answers GET (lists and the caller's own state)."""
    found: list[str] = []

    def walk(patterns: list[URLPattern | URLResolver], prefix: str = "") -> None:
        for entry in patterns:
            if not isinstance(entry.pattern, RoutePattern):
                continue
            route = prefix + str(entry.pattern)
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, route)
                continue
            view = getattr(entry.callback, "view_class", None)
            if (
                route.startswith(("v1/", "v2/"))
                and "<" not in route
                and view is not None
                and hasattr(view, "get")
            ):
                found.append(route)

    walk(get_resolver().url_patterns)
    return sorted(found)
