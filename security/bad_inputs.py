"""The bad-input table: every money, quantity, price and time field of the API, times every hostile value.

Each ``Target`` names one field (a dotted path into a JSON body, or a query parameter) and a valid base request;
the table substitutes each case into it. The contract for every row: a 4xx answer whose JSON body carries an
integer ``code``, never a 5xx, and the database unchanged (``security.dbstate``). Cases are ARCHITECTURE §2
(float rounding, ``1_000``, full-width digits, exponents, duplicate keys) plus the usual hostile shapes.

``RAW`` values are spliced into the JSON text verbatim (numbers the client would send as JSON numbers).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Raw:
    """A JSON literal spliced verbatim into the body text (e.g. ``9999999999999999.01`` as a number)."""

    text: str


Kind = Literal["decimal", "decimal0", "datetime", "date", "int"]


@dataclass(frozen=True)
class Target:
    label: str
    method: str
    path: str  # may contain ``{order_id}`` (an open order of the caller) or ``{symbol}`` (a held position)
    location: Literal["body", "query"]
    field: str  # dotted path for bodies
    kind: Kind
    base: dict[str, Any] = dataclasses.field(default_factory=dict)


LIMIT_BUY: dict[str, Any] = {
    "symbol": "AAPL",
    "qty": "1",
    "side": "buy",
    "type": "limit",
    "time_in_force": "day",
    "limit_price": "100",
}
STOP_LIMIT_SELL: dict[str, Any] = {**LIMIT_BUY, "side": "sell", "type": "stop_limit", "stop_price": "99"}
TRAILING: dict[str, Any] = {
    "symbol": "AAPL",
    "qty": "1",
    "side": "sell",
    "type": "trailing_stop",
    "time_in_force": "day",
    "trail_price": "1",
}
BRACKET: dict[str, Any] = {
    **LIMIT_BUY,
    "order_class": "bracket",
    "take_profit": {"limit_price": "110"},
    "stop_loss": {"stop_price": "95", "limit_price": "94"},
}
DEPOSIT: dict[str, Any] = {"direction": "INCOMING", "type": "ach", "amount": "10"}
ACATS_IN: dict[str, Any] = {
    "direction": "INCOMING",
    "type": "acats",
    "symbol": "AAPL",
    "qty": "1",
    "cost_basis": "100",
}
AGREEMENT = {
    "agreement": "customer_agreement",
    "signed_at": "2026-01-01T00:00:00Z",
    "ip_address": "127.0.0.1",
}

TARGETS: list[Target] = [
    Target("order.qty", "post", "/v2/orders", "body", "qty", "decimal", LIMIT_BUY),
    Target("order.notional", "post", "/v2/orders", "body", "notional", "decimal",
           {**LIMIT_BUY, "type": "market", "limit_price": None, "qty": None, "notional": "10"}),
    Target("order.limit_price", "post", "/v2/orders", "body", "limit_price", "decimal", LIMIT_BUY),
    Target("order.stop_price", "post", "/v2/orders", "body", "stop_price", "decimal", STOP_LIMIT_SELL),
    Target("order.trail_price", "post", "/v2/orders", "body", "trail_price", "decimal", TRAILING),
    Target("order.trail_percent", "post", "/v2/orders", "body", "trail_percent", "decimal",
           {**TRAILING, "trail_price": None, "trail_percent": "1"}),
    Target("order.take_profit.limit_price", "post", "/v2/orders", "body", "take_profit.limit_price",
           "decimal", BRACKET),
    Target("order.stop_loss.stop_price", "post", "/v2/orders", "body", "stop_loss.stop_price", "decimal",
           BRACKET),
    Target("order.stop_loss.limit_price", "post", "/v2/orders", "body", "stop_loss.limit_price", "decimal",
           BRACKET),
    Target("replace.qty", "patch", "/v2/orders/{order_id}", "body", "qty", "decimal", {"qty": "2"}),
    Target("replace.limit_price", "patch", "/v2/orders/{order_id}", "body", "limit_price", "decimal",
           {"limit_price": "99"}),
    Target("replace.stop_price", "patch", "/v2/orders/{order_id}", "body", "stop_price", "decimal",
           {"stop_price": "99"}),
    Target("replace.trail", "patch", "/v2/orders/{order_id}", "body", "trail", "decimal", {"trail": "1"}),
    Target("transfer.amount", "post", "/v1/transfers", "body", "amount", "decimal", DEPOSIT),
    Target("transfer.qty", "post", "/v1/transfers", "body", "qty", "decimal", ACATS_IN),
    Target("transfer.cost_basis", "post", "/v1/transfers", "body", "cost_basis", "decimal0", ACATS_IN),
    Target("kyc.date_of_birth", "post", "/v1/accounts/kyc", "body", "identity.date_of_birth", "date",
           {"identity": {"date_of_birth": "1990-01-01"}}),
    Target("kyc.agreement.signed_at", "post", "/v1/accounts/kyc", "body", "agreements.0.signed_at", "datetime",
           {"agreements": [AGREEMENT]}),
    Target("close.qty", "delete", "/v2/positions/{symbol}", "query", "qty", "decimal"),
    Target("close.percentage", "delete", "/v2/positions/{symbol}", "query", "percentage", "decimal"),
    Target("orders.after", "get", "/v2/orders", "query", "after", "datetime"),
    Target("orders.until", "get", "/v2/orders", "query", "until", "datetime"),
    Target("orders.limit", "get", "/v2/orders", "query", "limit", "int"),
    Target("activities.date", "get", "/v2/account/activities", "query", "date", "date"),
    Target("activities.after", "get", "/v2/account/activities", "query", "after", "datetime"),
    Target("activities.until", "get", "/v2/account/activities", "query", "until", "datetime"),
    Target("activities.page_size", "get", "/v2/account/activities", "query", "page_size", "int"),
    Target("calendar.start", "get", "/v2/calendar", "query", "start", "date"),
    Target("calendar.end", "get", "/v2/calendar", "query", "end", "date"),
    Target("bars.start", "get", "/v2/stocks/bars", "query", "start", "datetime",
           {"symbols": "AAPL", "timeframe": "1Min"}),
    Target("bars.end", "get", "/v2/stocks/bars", "query", "end", "datetime",
           {"symbols": "AAPL", "timeframe": "1Min"}),
    Target("bars.limit", "get", "/v2/stocks/bars", "query", "limit", "int",
           {"symbols": "AAPL", "timeframe": "1Min"}),
    Target("symbol_bars.start", "get", "/v2/stocks/AAPL/bars", "query", "start", "datetime",
           {"timeframe": "1Min"}),
    Target("orderbook.depth", "get", "/v2/stocks/AAPL/orderbook", "query", "depth", "int"),
]  # fmt: skip

# (label, value): invalid for every decimal field (money, price, quantity, percentage).
DECIMAL_CASES: list[tuple[str, Any]] = [
    ("json-number-float-rounding", Raw("9999999999999999.01")),
    ("json-number-exponent", Raw("1e3")),
    ("json-number-negative", Raw("-5")),
    ("string-exponent", "1e3"),
    ("underscore", "1_000"),
    ("fullwidth-digits", "\uff11\uff12"),
    ("arabic-indic-digits", "\u0661\u0662"),
    ("nan", "NaN"),
    ("infinity", "Infinity"),
    ("negative", "-1"),
    ("empty", ""),
    ("padded", " 1 "),
    ("hex", "0x10"),
    ("thousands-separator", "1,000"),
    ("bool", True),
    ("list", []),
    ("object", {}),
    ("four-hundred-digits", "9" * 400),
    ("too-precise", "1.00000000000001"),
    ("sql", "1; DROP TABLE orders_order"),
    ("nul-byte", "1\u0000"),
]
# Zero is invalid wherever a field must be positive ("decimal"), valid where it may be zero ("decimal0").
POSITIVE_ONLY_CASES: list[tuple[str, Any]] = [("zero", "0"), ("negative-zero", "-0")]

DATETIME_CASES: list[tuple[str, Any]] = [
    ("month-13", "2026-13-01T00:00:00Z"),
    ("hour-25", "2026-01-01T25:00:00Z"),
    ("word", "yesterday"),
    ("zero-date", "0000-00-00T00:00:00Z"),
    ("offset-out-of-range", "2026-01-01T00:00:00+99:00"),
    ("sql", "2026-01-01' OR '1'='1"),
    ("five-thousand-chars", "2" * 5000),
    ("empty", ""),
]
DATE_CASES: list[tuple[str, Any]] = [
    ("month-13", "2026-13-01"),
    ("feb-30", "2026-02-30"),
    ("word", "tomorrow"),
    ("zero-date", "0000-00-00"),
    ("sql", "2026-01-01'; DROP TABLE x;--"),
    ("five-thousand-chars", "2" * 5000),
]
INT_CASES: list[tuple[str, Any]] = [
    ("negative", "-1"),
    ("zero", "0"),
    ("exponent", "1e3"),
    ("fullwidth-digits", "\uff11\uff10"),
    ("twenty-digits", "9" * 20),
    ("fraction", "1.5"),
    ("word", "ten"),
]


def cases_for(target: Target) -> list[tuple[str, Any]]:
    if target.kind in ("decimal", "decimal0"):
        cases = DECIMAL_CASES + (POSITIVE_ONLY_CASES if target.kind == "decimal" else [])
        if target.location == "query":
            # A query string has no JSON types: only the textual cases apply.
            return [(label, value) for label, value in cases if isinstance(value, str)]
        return cases
    if target.kind == "datetime":
        cases = DATETIME_CASES
    elif target.kind == "date":
        cases = DATE_CASES
    else:
        cases = INT_CASES
    if target.location == "body":
        return [*cases, ("json-number", Raw("20260101")), ("bool", True), ("object", {})]
    return cases


def rows() -> list[tuple[Target, str, Any]]:
    """Every (target, case label, value) of the table."""
    return [(t, label, value) for t in TARGETS for label, value in cases_for(t)]


_RAW_MARK = "\u0000RAW\u0000"


def _set_path(body: Any, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = body
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def body_with(target: Target, value: Any) -> bytes:
    """The base body with ``value`` at the target's field (``None`` base values dropped), as JSON bytes."""
    body = json.loads(json.dumps({k: v for k, v in target.base.items() if v is not None}))
    _set_path(body, target.field, _RAW_MARK if isinstance(value, Raw) else value)
    text = json.dumps(body, ensure_ascii=False)
    if isinstance(value, Raw):
        text = text.replace(json.dumps(_RAW_MARK), value.text)
    return text.encode()


def query_with(target: Target, value: str) -> dict[str, str]:
    return {**{k: str(v) for k, v in target.base.items()}, target.field: value}


# Path-id tricks tried on every object route (URL-quoted by the caller where needed).
PATH_ID_CASES: list[tuple[str, str]] = [
    ("dot-dot", ".."),
    ("encoded-dot-dot", "%2e%2e"),
    ("traversal", "..%2f..%2fadmin"),
    ("unicode", "\u0430\u0440\u0440\u04cf\u0435"),  # Cyrillic look-alike of "apple"
    ("fullwidth", "\uff21\uff21\uff30\uff2c"),
    ("sql", "1' OR '1'='1"),
    ("sql-union", "1 UNION SELECT password FROM accounts_user--"),
    ("very-long", "a" * 5000),
    ("percent-nul", "%00"),
    ("uuid-upper", "6F9619FF-8B86-D011-B42D-00CF4FC964FF"),
    ("negative-int", "-1"),
]


def accepted_reason(scope_label: str, location: str, kind: str, case: str) -> str | None:
    """The reviewed reason a case may be accepted for this target, or None (it must be refused)."""
    from security.allowlists import BAD_INPUT_ACCEPTED

    for scope in (scope_label, f"{location}-{kind}", location):
        reason = BAD_INPUT_ACCEPTED.get((scope, case))
        if reason is not None:
            return reason
    return None
