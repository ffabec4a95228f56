"""The OpenAPI schema is complete, warning-free and valid, and it documents what the endpoints really answer.

- ``manage.py spectacular --validate --fail-on-warn`` succeeds: a view without response information, a colliding
  operation id or component name, or an unknown field type fails this suite (and ``check --deploy``, where
  drf-spectacular's W001/W002 are on).
- Every operation documents a concrete 2xx body (204 excepted) and every 4xx is the one ``Error`` component.
- Representative endpoints, called for real, answer exactly the documented properties (no more, no fewer), with
  ``null`` only where the schema says nullable, validated by ``jsonschema`` against the generated document.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from django.core.management import call_command
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.management.commands.spectacular import SchemaGenerationError
from rest_framework.test import APIClient

from apps.accounts.models import BrokerageAccount
from apps.core.markettime import FixedClock
from apps.core.markettime_config import market_clock_override
from tests.orders.factories import asset_create, funded_account

METHODS = ("get", "post", "put", "patch", "delete")
# Tuesday 2026-11-24 10:00 New York: the regular session is open.
OPEN_AT = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    generator = SchemaGenerator()  # type: ignore[no-untyped-call]
    generated: dict[str, Any] = generator.get_schema(request=None, public=True)  # type: ignore[no-untyped-call]
    return generated


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


# ------------------------------------------------------------------------------------------------ the document


def test_schema_generates_without_warnings_and_validates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "schema.yaml"
    try:
        call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    except SchemaGenerationError:
        pytest.fail("drf-spectacular warnings/errors:\n" + capsys.readouterr().err)
    assert out.stat().st_size > 0


def test_every_operation_documents_a_concrete_success_body(schema: dict[str, Any]) -> None:
    generic: tuple[dict[str, Any], ...] = ({}, {"type": "object", "additionalProperties": {}})
    missing: list[str] = []
    for path, method, operation in _operations(schema):
        successes = {k: v for k, v in operation["responses"].items() if k.startswith("2")}
        if not successes:
            missing.append(f"{method.upper()} {path}: no 2xx")
        for status, response in successes.items():
            if status == "204":
                continue
            bodies = [c.get("schema", {}) for c in response.get("content", {}).values()]
            if not bodies or any(b in generic for b in bodies):
                missing.append(f"{method.upper()} {path} {status}: no body schema")
    assert missing == []


def test_operation_ids_are_unique_and_named(schema: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in _operations(schema)]
    assert len(ids) == len(set(ids))
    assert not [i for i in ids if i[-1].isdigit()]  # no numeral suffixes from collision resolution


def test_every_client_error_is_the_one_error_body(schema: dict[str, Any]) -> None:
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["code", "message"]
    assert error["properties"]["code"] == {"type": "integer"}
    wrong = [
        f"{method.upper()} {path} {status}"
        for path, method, op in _operations(schema)
        for status, response in op["responses"].items()
        if status[0] in "45"
        and response.get("content", {}).get("application/json", {}).get("schema")
        != {"$ref": "#/components/schemas/Error"}
    ]
    assert wrong == []
    # Statuses the post-processing hook does not add are documented where a view can answer them.
    quote = schema["paths"]["/v2/stocks/{symbol}/quotes/latest"]["get"]["responses"]
    assert quote["503"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_decimals_are_strings_out_and_exact_numbers_or_strings_in(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    assert components["Order"]["properties"]["filled_qty"]["type"] == "string"
    assert components["Order"]["properties"]["qty"]["nullable"] is True
    assert [b.get("type") for b in components["OrderCreateRequest"]["properties"]["qty"]["oneOf"]] == [
        "string",
        "number",
    ]


# ------------------------------------------------------------------------------------------------ real answers


def _strict(node: Any) -> Any:
    """OpenAPI 3.0 → JSON Schema for validation: ``nullable`` as a null branch, documented objects closed."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: _strict(v) if k != "properties" else {p: _strict(s) for p, s in v.items()} for k, v in node.items()
    }
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if out.pop("nullable", False):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def _documented(schema: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    response = schema["paths"][path][method]["responses"][str(status)]
    body: dict[str, Any] = response["content"]["application/json"]["schema"]
    return body


def _assert_answers_as_documented(
    schema: dict[str, Any], path: str, method: str, status: int, body: Any
) -> dict[str, Any]:
    documented = _documented(schema, path, method, status)
    root = {"components": _strict(copy.deepcopy(schema["components"])), **_strict(documented)}
    jsonschema.validate(body, root, cls=jsonschema.Draft7Validator)
    return documented


@pytest.fixture
def clock() -> Iterator[FixedClock]:
    fixed = FixedClock(OPEN_AT)
    market_clock_override(fixed)
    yield fixed
    market_clock_override(None)


@pytest.fixture
def account(clock: FixedClock) -> BrokerageAccount:
    asset_create(symbol="AAPL")
    return funded_account()


@pytest.fixture
def client(account: BrokerageAccount) -> APIClient:
    c = APIClient()
    c.force_authenticate(account.owner)
    return c


LIMIT_BUY = {
    "symbol": "AAPL",
    "qty": "10",
    "side": "buy",
    "type": "limit",
    "time_in_force": "day",
    "limit_price": "100.5",
}


@pytest.mark.django_db
def test_order_endpoints_answer_exactly_the_documented_order(
    schema: dict[str, Any], client: APIClient
) -> None:
    created = client.post("/v2/orders", LIMIT_BUY, format="json")
    assert created.status_code == 200, created.content
    documented = _assert_answers_as_documented(schema, "/v2/orders", "post", 200, created.json())
    order_props = set(schema["components"]["schemas"]["Order"]["properties"])
    assert documented == {"$ref": "#/components/schemas/OrderSubmitResult"}
    assert {"$ref": "#/components/schemas/Order"} in schema["components"]["schemas"]["OrderSubmitResult"][
        "oneOf"
    ]
    assert set(created.json()) == order_props
    assert created.json()["legs"] is None  # documented nullable

    listed = client.get("/v2/orders", {"status": "all"})
    assert listed.status_code == 200
    _assert_answers_as_documented(schema, "/v2/orders", "get", 200, listed.json())
    assert [set(o) for o in listed.json()] == [order_props]

    one = client.get(f"/v2/orders/{created.json()['id']}")
    assert one.status_code == 200
    _assert_answers_as_documented(schema, "/v2/orders/{order_id}", "get", 200, one.json())
    assert set(one.json()) == order_props

    dry = client.post("/v2/orders?dry_run=true", LIMIT_BUY, format="json")
    assert dry.status_code == 200, dry.content
    _assert_answers_as_documented(schema, "/v2/orders", "post", 200, dry.json())
    assert set(dry.json()) == set(schema["components"]["schemas"]["OrderDryRun"]["properties"])

    canceled = client.delete("/v2/orders")
    assert canceled.status_code == 207, canceled.content
    _assert_answers_as_documented(schema, "/v2/orders", "delete", 207, canceled.json())
    assert [set(r) for r in canceled.json()] == [
        set(schema["components"]["schemas"]["OrderCancelResult"]["properties"])
    ]


@pytest.mark.django_db
def test_error_answers_are_the_documented_error_body(schema: dict[str, Any], client: APIClient) -> None:
    missing = client.get("/v2/orders/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    _assert_answers_as_documented(schema, "/v2/orders/{order_id}", "get", 404, missing.json())
    invalid = client.post("/v2/orders", {**LIMIT_BUY, "qty": "1e3"}, format="json")
    assert invalid.status_code == 422
    _assert_answers_as_documented(schema, "/v2/orders", "post", 422, invalid.json())
    assert {"code", "message"} <= set(invalid.json())


READS = [
    pytest.param("/v2/account", "/v2/account", "Account", id="account"),
    pytest.param("/v2/assets/{symbol}", "/v2/assets/AAPL", "Asset", id="asset"),
    pytest.param("/v2/clock", "/v2/clock", "Clock", id="clock"),
    pytest.param("/v2/calendar", "/v2/calendar", "CalendarDay", id="calendar"),
    pytest.param("/v2/account/activities", "/v2/account/activities", "NonTradeActivity", id="activities"),
    pytest.param(
        "/v2/account/portfolio/history", "/v2/account/portfolio/history", "PortfolioHistory", id="history"
    ),
    pytest.param("/v1/accounts/kyc", "/v1/accounts/kyc", "KycApplication", id="kyc-not-started"),
    pytest.param(
        "/v2/stocks/{symbol}/orderbook", "/v2/stocks/AAPL/orderbook", "StockSymbolOrderbook", id="orderbook"
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("route", "url", "component"), READS)
def test_reads_answer_exactly_the_documented_properties(
    schema: dict[str, Any], client: APIClient, route: str, url: str, component: str
) -> None:
    response = client.get(url)
    assert response.status_code == 200, response.content
    body = response.json()
    _assert_answers_as_documented(schema, route, "get", 200, body)
    first = body[0] if isinstance(body, list) else body
    assert first, "the fixture must produce at least one item"
    component_schema = schema["components"]["schemas"][component]
    required = set(component_schema.get("required", []))
    assert required <= set(first) <= set(component_schema["properties"])


@pytest.mark.django_db
def test_api_key_creation_answers_the_documented_secret_once(
    schema: dict[str, Any], client: APIClient
) -> None:
    created = client.post("/v1/api-keys", {"name": "bot", "scopes": ["read"]}, format="json")
    assert created.status_code == 201, created.content
    _assert_answers_as_documented(schema, "/v1/api-keys", "post", 201, created.json())
    assert set(created.json()) == set(schema["components"]["schemas"]["ApiKeyCreated"]["properties"])
    listed = client.get("/v1/api-keys")
    _assert_answers_as_documented(schema, "/v1/api-keys", "get", 200, listed.json())
    assert [set(k) for k in listed.json()] == [set(schema["components"]["schemas"]["ApiKey"]["properties"])]
