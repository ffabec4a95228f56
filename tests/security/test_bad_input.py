"""The bad-input table (``security.bad_inputs``): every money, quantity, price and time field, every hostile value.

Per target one customer world; every case must answer 4xx with an integer ``code`` (never 5xx, never 2xx), and
the whole database must be unchanged across all of the target's cases. Also: oversized bodies, deep nesting,
wrong content types and path-id tricks on every object route.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from rest_framework.test import APIClient

from security.bad_inputs import (
    PATH_ID_CASES,
    TARGETS,
    Target,
    accepted_reason,
    body_with,
    cases_for,
    query_with,
)
from security.dbstate import db_fingerprint, fingerprint_diff
from tests.accounts.test_object_access import object_routes
from tests.security.conftest import World

pytestmark = pytest.mark.django_db


def _refused_properly(response: Any) -> str | None:
    """None if the answer is a 4xx with an integer code, else what is wrong with it."""
    if not 400 <= response.status_code < 500:
        return f"status {response.status_code}: {response.content[:200]!r}"
    try:
        code = json.loads(response.content).get("code")
    except (ValueError, AttributeError):
        return f"status {response.status_code} without a JSON error body: {response.content[:200]!r}"
    return None if isinstance(code, int) else f"status {response.status_code} without an integer code"


def _send(client: APIClient, target: Target, path: str, value: Any) -> Any:
    if target.location == "body":
        return client.generic(target.method.upper(), path, body_with(target, value), "application/json")  # type: ignore[arg-type]
    return client.generic(target.method.upper(), path + "?" + _qs(query_with(target, value)))


def _qs(params: dict[str, str]) -> str:
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in params.items())


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.label)
def test_every_bad_value_is_a_coded_4xx_and_changes_nothing(world: World, target: Target) -> None:
    a = world.a
    path = target.path.format(order_id=a.order_id, symbol="AAPL")
    before = db_fingerprint()
    problems = {}
    for label, value in cases_for(target):
        response = _send(a.client, target, path, value)
        if response.status_code < 300 and accepted_reason(target.label, target.location, target.kind, label):
            continue
        problem = _refused_properly(response)
        if problem is not None:
            problems[label] = problem
    assert problems == {}
    assert fingerprint_diff(before, db_fingerprint()) == []


def test_the_table_covers_every_field_kind() -> None:
    kinds = {t.kind for t in TARGETS}
    assert kinds == {"decimal", "decimal0", "datetime", "date", "int"}
    assert len([t for t in TARGETS if t.location == "body"]) >= 15


MUTATING = [
    pytest.param("/v2/orders", "post", id="orders"),
    pytest.param("/v1/transfers", "post", id="transfers"),
    pytest.param("/v1/accounts/kyc", "post", id="kyc"),
    pytest.param("/v1/api-keys", "post", id="api-keys"),
    pytest.param("/v2/orders/{order_id}", "patch", id="replace"),
]


# A number only the fingerprint/renderer sees before a field refuses it (once a 500 in the idempotency hash).
HUGE_EXPONENTS = (
    b'{"identity":{"date_of_birth":6.3e+276},"qty":6.3e+276,"amount":6.3e+276,"limit_price":6.3e+276,'
    b'"scopes":[-2.3e+16],"x":6.3e+276}'
)
MULTIPART = b"--x\r\nContent-Disposition: form-data; name=qty\r\n\r\n1\r\n--x--"


def _hostile_bodies() -> list[tuple[str, bytes, str]]:
    return [
        ("oversized", b'{"symbol":"' + b"A" * (3 * 1024 * 1024) + b'"}', "application/json"),
        ("deep-nesting", b"[" * 5000 + b"]" * 5000, "application/json"),
        ("deep-objects", b'{"a":' * 40 + b"1" + b"}" * 40, "application/json"),
        ("bracket-bomb", b"[" * 20000, "application/json"),
        ("huge-exponents", HUGE_EXPONENTS, "application/json"),
        ("duplicate-keys", b'{"qty":"1","qty":"2","amount":"1","amount":"2"}', "application/json"),
        ("not-utf8", b'{"symbol":"\xff\xfe"}', "application/json"),
        ("top-level-list", b"[1,2,3]", "application/json"),
        ("top-level-string", b'"hello"', "application/json"),
        ("null", b"null", "application/json"),
        ("empty", b"", "application/json"),
        ("form", b"symbol=AAPL&qty=1", "application/x-www-form-urlencoded"),
        ("multipart", MULTIPART, "multipart/form-data; boundary=x"),
        ("text", b'{"qty":"1"}', "text/plain"),
        ("xml", b"<order><qty>1</qty></order>", "application/xml"),
        ("json-latin1", '{"symbol":"AAPL\u00e9"}'.encode("latin-1"), "application/json; charset=latin-1"),
    ]  # fmt: skip


@pytest.mark.parametrize(("path", "method"), MUTATING)
def test_hostile_bodies_are_coded_4xx_and_change_nothing(world: World, path: str, method: str) -> None:
    a = world.a
    url = path.format(order_id=a.order_id)
    before = db_fingerprint()
    problems = {}
    for label, body, content_type in _hostile_bodies():
        response = a.client.generic(method.upper(), url, body, content_type)  # type: ignore[arg-type]
        scope = path.split("/")[-1]
        if response.status_code < 300 and accepted_reason(scope, "body", "raw", label):
            before = db_fingerprint()  # an accepted case is a legitimate write: compare from here on
            continue
        problem = _refused_properly(response)
        if problem is not None:
            problems[label] = problem
    assert problems == {}
    assert fingerprint_diff(before, db_fingerprint()) == []


@pytest.mark.parametrize("route", object_routes(), ids=lambda r: r.route)
def test_path_id_tricks_never_500_and_change_nothing(world: World, route: Any) -> None:
    a = world.a
    before = db_fingerprint()
    problems = {}
    for label, raw in PATH_ID_CASES:
        value = raw if "%" in raw else quote(raw, safe="")
        url = "/" + route.route
        for converter, name in route.params:
            url = url.replace(f"<{converter}:{name}>", value).replace(f"<{name}>", value)
        for method in route.methods:
            response = a.client.generic(method.upper(), url, b"{}", "application/json")  # type: ignore[arg-type]
            # activity_type is a filter: an unknown type may be an empty 200 list; objects must be 404/4xx.
            if response.status_code >= 500 or (
                response.status_code < 400 and "activity_type" not in route.route
            ):
                problems[f"{method} {label}"] = f"{response.status_code}: {response.content[:120]!r}"
    assert problems == {}
    assert fingerprint_diff(before, db_fingerprint()) == []
