"""The seeded order storm: ``clients`` threads, each owning a slice of the accounts, sending orders of every
type, cancels, replaces and ACH transfers through the real HTTP API.

History (Jepsen-style, JSONL, one line per event): ``{"phase": "invoke", ...}`` before a request and
``{"phase": "complete", "outcome": "ok"|"fail"|"unknown", ...}`` after it. A timeout, a transport error, a 5xx
or a 409 ``idempotency_key_in_progress`` is retried with the SAME ``Idempotency-Key`` (bounded, exponential
backoff with jitter); when the attempts run out the outcome is ``unknown``: the auditor then requires the key
to have produced zero or one effect. Every order's ``client_order_id`` is its idempotency key.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx

from chaos.seed import SeededAccount

CENT = Decimal("0.01")
MAX_ATTEMPTS = 6
REQUEST_TIMEOUT_S = 10.0


class History:
    """Thread-safe JSONL writer, flushed per line so a crash of the runner keeps what happened."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("w")
        self._lock = threading.Lock()
        self.outcomes: Counter[str] = Counter()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, default=str, separators=(",", ":"))
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()
            if record.get("phase") == "complete":
                self.outcomes[f"{record['op']}:{record['outcome']}"] += 1

    def close(self) -> None:
        self._fh.close()


@dataclass
class ClientState:
    account: SeededAccount
    orders: list[dict[str, Any]] = field(default_factory=list)  # acknowledged orders: id, type, side


def _price(x: Decimal) -> str:
    return str(x.quantize(CENT, rounding=ROUND_HALF_UP))


def order_body(rng: random.Random, symbol: str, ref: Decimal, key: str) -> dict[str, Any]:
    """One random order of any type; prices stay inside the ±10 % collar around the reference price."""
    side = rng.choice(("buy", "sell"))
    qty = str(rng.randint(1, 5))
    kind = rng.choices(
        ("limit", "market", "stop", "stop_limit", "trailing_stop", "bracket"), weights=(50, 15, 10, 10, 5, 10)
    )[0]
    near = ref * (1 + Decimal(rng.randint(-300, 300)) / 10000)
    body: dict[str, Any] = {"symbol": symbol, "side": side, "qty": qty, "client_order_id": key}
    away = Decimal(rng.randint(100, 500)) / 10000  # 1-5 %
    stop = ref * (1 + away) if side == "buy" else ref * (1 - away)
    if kind == "limit":
        body |= {
            "type": "limit",
            "limit_price": _price(near),
            "time_in_force": rng.choice(("day", "gtc", "ioc", "fok")),
        }
    elif kind == "market":
        body |= {"type": "market", "time_in_force": rng.choice(("day", "ioc"))}
    elif kind == "stop":
        body |= {"type": "stop", "stop_price": _price(stop), "time_in_force": rng.choice(("day", "gtc"))}
    elif kind == "stop_limit":
        body |= {
            "type": "stop_limit", "stop_price": _price(stop), "limit_price": _price(stop),
            "time_in_force": rng.choice(("day", "gtc")),
        }  # fmt: skip
    elif kind == "trailing_stop":
        body |= {"type": "trailing_stop", "trail_percent": str(rng.randint(1, 5)), "time_in_force": "day"}
    else:
        body |= {
            "side": "buy", "type": "limit", "limit_price": _price(near), "time_in_force": "gtc",
            "order_class": "bracket", "take_profit": {"limit_price": _price(ref * Decimal("1.08"))},
            "stop_loss": {"stop_price": _price(ref * Decimal("0.92"))},
        }  # fmt: skip
    return body


class Generator:
    def __init__(
        self,
        *,
        base_url: str,
        accounts: list[SeededAccount],
        refs: dict[str, Decimal],
        clients: int,
        ops: int,
        duration_s: float,
        seed: int,
        history: History,
    ) -> None:
        self.base_url = base_url
        self.refs = refs
        self.symbols = sorted(refs)
        self.history = history
        self.ops = ops
        self.duration_s = duration_s
        self.seed = seed
        self.clients = clients
        self.slices = [accounts[i::clients] for i in range(clients)]
        self._issued = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def _take(self) -> int | None:
        with self._lock:
            if self._issued >= self.ops or self._stop.is_set():
                return None
            self._issued += 1
            return self._issued

    @property
    def issued(self) -> int:
        return self._issued

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        deadline = time.monotonic() + self.duration_s
        threads = [
            threading.Thread(target=self._client, args=(i, deadline), name=f"client-{i}", daemon=True)
            for i in range(self.clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _client(self, index: int, deadline: float) -> None:
        rng = random.Random(self.seed * 100003 + index)  # noqa: S311 (reproducible load, not security)
        states = [ClientState(a) for a in self.slices[index]]
        if not states:
            return
        with httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT_S) as http:
            while time.monotonic() < deadline:
                n = self._take()
                if n is None:
                    return
                st = rng.choice(states)
                op = rng.choices(("submit", "cancel", "replace", "transfer"), weights=(62, 15, 10, 13))[0]
                if op in ("cancel", "replace") and not st.orders:
                    op = "submit"
                key = f"s{self.seed}-c{index}-n{n}"
                self._op(http, rng, st, op, key, index)

    def _op(
        self, http: httpx.Client, rng: random.Random, st: ClientState, op: str, key: str, client: int
    ) -> None:
        headers = {"APCA-API-KEY-ID": st.account.key_id, "APCA-API-SECRET-KEY": st.account.secret}
        target: dict[str, Any] | None = None
        if op == "submit":
            symbol = rng.choice(self.symbols)
            method, path, body = "POST", "/v2/orders", order_body(rng, symbol, self.refs[symbol], key)
        elif op == "cancel":
            target = rng.choice(st.orders)
            method, path, body = "DELETE", f"/v2/orders/{target['id']}", None
        elif op == "replace":
            limits = [o for o in st.orders if o["type"] == "limit"] or st.orders
            target = rng.choice(limits)
            ref = self.refs[target["symbol"]]
            body = {
                "qty": str(rng.randint(1, 5)),
                "limit_price": _price(ref * (1 + Decimal(rng.randint(-200, 200)) / 10000)),
            }
            method, path = "PATCH", f"/v2/orders/{target['id']}"
        else:
            incoming = rng.random() < 0.6
            amount = Decimal(rng.randint(100, 5000) if incoming else rng.randint(10, 1000))
            body = {"direction": "INCOMING" if incoming else "OUTGOING", "type": "ach", "amount": str(amount)}
            method, path = "POST", "/v1/transfers"
        base = {"op": op, "key": key, "client": client, "account_id": st.account.account_id}
        self.history.write(
            {**base, "phase": "invoke", "t": time.time(), "method": method, "path": path, "body": body}
        )
        outcome, status, data, attempts = self._send(
            http, method, path, body, {**headers, "Idempotency-Key": key}
        )
        record: dict[str, Any] = {**base, "phase": "complete", "t": time.time(), "outcome": outcome,
                                  "status": status, "attempts": attempts}  # fmt: skip
        if outcome == "ok" and isinstance(data, dict):
            record["id"] = data.get("id")
            if op in ("submit", "replace"):
                record["client_order_id"] = data.get("client_order_id")
                st.orders.append(
                    {"id": data.get("id"), "type": data.get("type"), "symbol": data.get("symbol")}
                )
        elif isinstance(data, dict):
            record["error"] = data.get("error") or data.get("message")
        if target is not None:
            record["target"] = target["id"]
        self.history.write(record)

    def _send(
        self, http: httpx.Client, method: str, path: str, body: Any, headers: dict[str, str]
    ) -> tuple[str, int | None, Any, int]:
        status: int | None = None
        data: Any = None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                resp = http.request(method, path, json=body, headers=headers)
                status = resp.status_code
                try:
                    data = resp.json()
                except ValueError:
                    data = None
                in_progress = (
                    status == 409
                    and isinstance(data, dict)
                    and data.get("error") == "idempotency_key_in_progress"
                )
                if status < 500 and not in_progress:
                    return ("ok" if status < 300 else "fail"), status, data, attempt
            except httpx.HTTPError as exc:
                status, data = None, {"error": type(exc).__name__}
            # Same key again after a backoff: the server either replays the stored outcome or runs it once.
            time.sleep(min(4.0, 0.25 * 2 ** (attempt - 1)) * (0.5 + random.random()))  # noqa: S311
        return "unknown", status, data, MAX_ATTEMPTS
