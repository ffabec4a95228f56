"""Object-level access: a customer reaches only their own objects; every other id answers 404.

Generic on purpose: it walks every ``v1/`` and ``v2/`` route of the URL conf that takes a path parameter,
including routes other apps add later. For a parameter named in ``OWNED_OBJECT_MAKERS`` it uses a real object of
another customer (and checks its owner does reach it); for any other parameter it uses a well-formed id that
exists for nobody. Add a maker for your app's id parameter to test it against a real foreign object.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RoutePattern
from rest_framework.test import APIClient

from apps.accounts.models import User
from tests.accounts.factories import api_key, customer

pytestmark = pytest.mark.django_db

_PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")
_METHODS = ("get", "post", "put", "patch", "delete")
_BODY_METHODS = {"post", "put", "patch"}


def _make_api_key(owner: User) -> str:
    return api_key(owner)[0].key_id


# parameter name -> makes an object owned by the given customer and returns the id to put in the URL.
OWNED_OBJECT_MAKERS: dict[str, Callable[[User], str]] = {
    "key_id": _make_api_key,
}

# Reference data every customer may read (market data, the asset list): ids there are not owned objects.
PUBLIC_ROUTE_PREFIXES: tuple[str, ...] = ("v2/stocks/", "v2/assets/")

_FALLBACK_BY_CONVERTER: dict[str, Callable[[], str]] = {
    "uuid": lambda: str(uuid.uuid4()),
    "int": lambda: "987654321",
    "slug": lambda: "no-such-object",
    "str": lambda: "NOSUCHOBJECT0000",
    "path": lambda: "no/such/object",
}


@dataclass(frozen=True)
class Route:
    route: str
    view_class: Any

    @property
    def params(self) -> list[tuple[str, str]]:
        return [(m["converter"] or "str", m["name"]) for m in _PARAM.finditer(self.route)]

    @property
    def methods(self) -> list[str]:
        return [m for m in _METHODS if hasattr(self.view_class, m)]


def _walk(patterns: list[URLPattern | URLResolver], prefix: str = "") -> Iterator[Route]:
    for entry in patterns:
        if not isinstance(entry.pattern, RoutePattern):
            continue  # regex routes are not used by the API (no trailing slashes, Alpaca paths)
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, route)
        elif (
            route.startswith(("v1/", "v2/")) and "<" in route and not route.startswith(PUBLIC_ROUTE_PREFIXES)
        ):
            view_class = getattr(entry.callback, "view_class", None) or getattr(entry.callback, "cls", None)
            if view_class is not None:
                yield Route(route, view_class)


def object_routes() -> list[Route]:
    return sorted(_walk(get_resolver().url_patterns), key=lambda r: r.route)


def test_the_walk_finds_object_routes() -> None:
    assert "v1/api-keys/<str:key_id>" in [r.route for r in object_routes()]


def _urls(route: Route, owner: User) -> tuple[list[str], bool]:
    """URLs to try, and whether they point at a real object of ``owner``.

    A ``str`` parameter without a maker is tried both as a UUID and as a non-UUID string (neither may give a 500).
    """
    urls = ["/" + route.route]
    real = False
    for converter, name in route.params:
        token = f"<{converter}:{name}>" if f"<{converter}:{name}>" in route.route else f"<{name}>"
        maker = OWNED_OBJECT_MAKERS.get(name)
        if maker is not None:
            values = [maker(owner)]
            real = True
        elif converter == "str":
            values = [_FALLBACK_BY_CONVERTER["str"](), _FALLBACK_BY_CONVERTER["uuid"]()]
        else:
            values = [_FALLBACK_BY_CONVERTER.get(converter, _FALLBACK_BY_CONVERTER["str"])()]
        urls = [url.replace(token, value) for url in urls for value in values]
    return urls, real


@pytest.mark.parametrize("route", object_routes(), ids=lambda r: r.route)
def test_another_customers_object_is_404_for_every_method(route: Route) -> None:
    owner = customer()
    intruder = customer()
    urls, real = _urls(route, owner)
    if real and "get" in route.methods:
        own = APIClient()
        own.force_login(owner)
        assert own.get(urls[0]).status_code != 404, "the owner must reach their own object"

    client = APIClient()
    client.force_login(intruder)
    for url in urls:
        for method in route.methods:
            response = getattr(client, method)(url, {}, format="json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex)
            allowed = {404, 405} | ({400, 422} if method in _BODY_METHODS else set())
            assert response.status_code in allowed, f"{method.upper()} {url} -> {response.status_code}"
