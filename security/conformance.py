"""Conformance of our Alpaca trading endpoints against Alpaca's published OpenAPI spec (runs in the security venv).

For every operation of the spec under the paths we serve, call our live server with a realistic request as user A
and validate the answer against the spec's response schema for that status. Every difference is a deviation,
written to ``docs/security-conformance.md``; only a *missing required field* fails (alpaca-py's pydantic models
reject such a response). Usage: ``python security/conformance.py BASE_URL SPEC KEYS_JSON REPORT``.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any

import jsonschema

# Operations we serve, with the request we send (path filled in, optional JSON body).
CALLS: list[tuple[str, str, str, dict[str, Any] | None]] = [
    ("get", "/v2/account", "/v2/account", None),
    ("get", "/v2/account/activities", "/v2/account/activities", None),
    ("get", "/v2/account/activities/{activity_type}", "/v2/account/activities/FILL", None),
    ("get", "/v2/assets", "/v2/assets", None),
    ("get", "/v2/assets/{symbol_or_asset_id}", "/v2/assets/AAPL", None),
    ("get", "/v2/calendar", "/v2/calendar?start=2026-01-01&end=2026-01-31", None),
    ("get", "/v2/clock", "/v2/clock", None),
    ("post", "/v2/orders", "/v2/orders",
     {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "limit", "time_in_force": "gtc", "limit_price": "90"}),
    ("get", "/v2/orders", "/v2/orders?status=all", None),
    ("get", "/v2/orders/{order_id}", "/v2/orders/{order_id}", None),
    ("get", "/v2/orders:by_client_order_id", "/v2/orders:by_client_order_id?client_order_id={client_order_id}", None),
    ("patch", "/v2/orders/{order_id}", "/v2/orders/{order_id}", {"limit_price": "91"}),
    ("delete", "/v2/orders/{order_id}", "/v2/orders/{new_order_id}", None),
    ("get", "/v2/positions", "/v2/positions", None),
    ("get", "/v2/positions/{symbol_or_asset_id}", "/v2/positions/AAPL", None),
    ("delete", "/v2/orders", "/v2/orders", None),
]  # fmt: skip


def _resolve(spec: dict[str, Any], node: Any) -> Any:
    """Inline every local ``$ref`` (the spec's components) so jsonschema sees one self-contained schema."""
    if isinstance(node, dict):
        if "$ref" in node and node["$ref"].startswith("#/"):
            target: Any = spec
            for part in node["$ref"][2:].split("/"):
                target = target[part]
            return _resolve(spec, target)
        return {k: _resolve(spec, v) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(spec, v) for v in node]
    return node


def _oas_to_jsonschema(node: Any) -> Any:
    """OpenAPI 3.0 ``nullable: true`` → JSON Schema's ``type: [T, "null"]``."""
    if isinstance(node, dict):
        out = {
            k: _oas_to_jsonschema(v) for k, v in node.items() if k not in ("nullable", "example", "x-go-type")
        }
        if node.get("nullable") and isinstance(node.get("type"), str):
            out["type"] = [node["type"], "null"]
        return out
    if isinstance(node, list):
        return [_oas_to_jsonschema(v) for v in node]
    return node


def _call(base: str, key: dict[str, str], method: str, path: str, body: Any) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method.upper())  # noqa: S310 - loopback URL
    req.add_header("APCA-API-KEY-ID", key["key_id"])
    req.add_header("APCA-API-SECRET-KEY", key["secret"])
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            raw, status = resp.read(), resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    return status, (json.loads(raw) if raw.strip() else None)


def run(base: str, spec_path: str, keys_path: str, report_path: str) -> tuple[int, int]:
    spec = json.load(open(spec_path))  # noqa: SIM115 - a one-shot read
    key = json.load(open(keys_path))[-1]  # noqa: SIM115 - the third user: schemathesis may revoke the others
    ids: dict[str, str] = {}
    rows: list[tuple[str, str, str]] = []  # (operation, severity, text)
    failed = 0
    for method, spec_path_key, template, body in CALLS:
        op_name = f"{method.upper()} {spec_path_key}"
        operation = spec["paths"].get(spec_path_key, {}).get(method)
        if operation is None:
            rows.append((op_name, "deviation", "operation not in Alpaca's spec"))
            continue
        try:
            path = template.format(**ids)
        except KeyError:
            rows.append((op_name, "skipped", "no object to call it with (an earlier call failed)"))
            continue
        status, payload = _call(base, key, method, path, body)
        if method == "post" and spec_path_key == "/v2/orders" and isinstance(payload, dict):
            ids.update(order_id=str(payload.get("id")), client_order_id=str(payload.get("client_order_id")))
        if method == "patch" and isinstance(payload, dict) and "id" in payload:
            ids["new_order_id"] = str(payload["id"])
        if status == 401:
            # The seeded key must work, or nothing below would be measured: a failure, not a deviation.
            failed += 1
            rows.append((op_name, "FAIL not authenticated", "the seeded API key was refused"))
            continue
        responses = operation.get("responses", {})
        declared = responses.get(str(status))
        if declared is None:
            rows.append(
                (op_name, "deviation", f"status {status} is not declared (declared: {sorted(responses)})")
            )
            continue
        schema = (declared.get("content", {}).get("application/json", {}) or {}).get("schema")
        if schema is None or status >= 300:
            rows.append((op_name, "ok", f"status {status}"))
            continue
        schema = _oas_to_jsonschema(_resolve(spec, schema))
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(payload), key=lambda e: list(e.path))
        if not errors:
            rows.append((op_name, "ok", f"status {status}, body matches the spec"))
        seen: set[str] = set()
        for error in errors:
            where = "/".join(str(p) for p in error.path) or "(root)"
            text = f"{where}: {error.message[:200]}"
            if text in seen:
                continue
            seen.add(text)
            missing = error.validator == "required"
            failed += missing
            rows.append((op_name, "FAIL missing required" if missing else "deviation", text))
    passed = sum(1 for _, sev, _ in rows if sev == "ok")
    with open(report_path, "w") as out:
        out.write(
            "# Conformance of the Alpaca trading endpoints (generated by `make security`)\n\n"
            "Each of our trading endpoints called on a live server and its answer validated against Alpaca's\n"
            "published OpenAPI spec (`trading-api.openapi.json`). Deviations are data; only a missing required\n"
            "field fails (alpaca-py rejects such responses). Regenerate with `make security`.\n\n"
            f"Operations checked: {len(CALLS)}; conforming: {passed}; failures (missing required / refused key): "
            f"{failed}; "
            f"other deviations: {sum(1 for _, sev, _ in rows if sev == 'deviation')}.\n\n"
            "| operation | result | detail |\n|---|---|---|\n"
        )
        for op_name, severity, text in rows:
            cell = text.replace("|", "\\|")
            out.write(f"| `{op_name}` | {severity} | {cell} |\n")
    return passed, failed


if __name__ == "__main__":
    ok, bad = run(*sys.argv[1:5])
    print(f"conformance: {ok} conforming, {bad} failures (missing required fields or refused key)")
    sys.exit(1 if bad else 0)
