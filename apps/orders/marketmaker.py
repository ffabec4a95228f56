"""The demo market maker: an ORDINARY API client of our own REST API (its own account and API key).

It reaches the platform only over HTTP with its API key (``/v2/assets``, ``/v2/positions``, ``/v2/orders``),
exactly as any customer's program would: no database access, no back door. For each symbol it keeps one bid and
one ask ``half_spread`` around the asset's reference price (``reference_price`` on ``GET /v2/assets/{symbol}``,
a non-Alpaca field; the market-data feed moves it), refreshing them by replace (``PATCH``) on a timer.

Invariants:
- Quotes are on the tick (bids rounded down, asks up) and never cross each other (bid < ask).
- Inventory is bounded: when the position has grown ``max_inventory`` above its starting level the bid is
  withdrawn, when it has shrunk that much the ask is; fills can therefore never move it much further.
- Stateless between rounds: each round reads the open orders back, so a restart picks up where it left off.
  Orders in a pending state are left alone for that round. On stop every open order is canceled.
- Money is Decimal end to end (JSON decimals are sent and read as strings).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import httpx

logger = logging.getLogger(__name__)

LIVE = ("new", "partially_filled", "accepted")  # open orders the maker may replace


@dataclass(frozen=True, slots=True)
class MarketMakerConfig:
    base_url: str
    key_id: str
    secret_key: str
    symbols: tuple[str, ...] = ()  # empty: every active asset with a reference price
    half_spread: Decimal = Decimal("0.002")  # each side, as a fraction of the reference price
    qty: Decimal = Decimal("10")
    max_inventory: Decimal = Decimal("500")  # shares either side of the starting position
    refresh_s: float = 2.0


@dataclass(frozen=True, slots=True)
class Quote:
    side: str  # "buy" | "sell"
    price: Decimal
    qty: Decimal


def _on_tick(price: Decimal, tick: Decimal, rounding: str) -> Decimal:
    return (price / tick).to_integral_value(rounding=rounding) * tick


def quotes_for(
    *,
    reference: Decimal,
    tick: Decimal,
    half_spread: Decimal,
    qty: Decimal,
    inventory_change: Decimal,
    max_inventory: Decimal,
) -> list[Quote]:
    """The two-sided quote around ``reference`` (pure: the policy, testable without a server)."""
    bid = _on_tick(reference * (1 - half_spread), tick, ROUND_FLOOR)
    ask = _on_tick(reference * (1 + half_spread), tick, ROUND_CEILING)
    if ask <= bid:
        ask = bid + tick
    out: list[Quote] = []
    if bid > 0 and inventory_change < max_inventory:
        out.append(Quote("buy", bid, qty))
    if inventory_change > -max_inventory:
        out.append(Quote("sell", ask, qty))
    return out


class MarketMaker:
    def __init__(self, config: MarketMakerConfig, client: httpx.Client | None = None) -> None:
        self.config = config
        self.client = client or httpx.Client(
            base_url=config.base_url,
            headers={"APCA-API-KEY-ID": config.key_id, "APCA-API-SECRET-KEY": config.secret_key},
            timeout=10.0,
        )
        self.stopping = threading.Event()
        self.start_position: dict[str, Decimal] = {}

    # ------------------------------------------------------------------ REST reads
    def _get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params or None)
        response.raise_for_status()
        return response.json()

    def symbols(self) -> list[str]:
        if self.config.symbols:
            return list(self.config.symbols)
        assets = self._get("/v2/assets", status="active")
        return sorted(a["symbol"] for a in assets if a.get("tradable") and a.get("reference_price"))

    def asset(self, symbol: str) -> tuple[Decimal | None, Decimal]:
        """(reference price, tick) from ``GET /v2/assets/{symbol}``."""
        asset = self._get(f"/v2/assets/{symbol}")
        ref = asset.get("reference_price")
        return (Decimal(ref) if ref else None), Decimal(asset["price_increment"])

    def position(self, symbol: str) -> Decimal:
        response = self.client.get(f"/v2/positions/{symbol}")
        if response.status_code == 404:
            return Decimal(0)
        response.raise_for_status()
        return Decimal(response.json()["qty"])

    def open_orders(self, symbol: str) -> list[dict[str, Any]]:
        orders: list[dict[str, Any]] = self._get(
            "/v2/orders", status="open", symbols=symbol, limit=500, direction="asc"
        )
        return orders

    # ------------------------------------------------------------------ REST writes
    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        # An Idempotency-Key per request: a retried request never places a second order.
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        response = self.client.request(method, path, json=body, headers=headers)
        if response.status_code >= 400:
            logger.warning(
                "market maker request refused",
                extra={"method": method, "path": path, "status": response.status_code, "body": response.text},
            )
        return response

    def submit(self, symbol: str, quote: Quote) -> None:
        self._send(
            "POST",
            "/v2/orders",
            {
                "symbol": symbol,
                "side": quote.side,
                "type": "limit",
                "time_in_force": "day",
                "qty": str(quote.qty),
                "limit_price": str(quote.price),
                "client_order_id": f"mm-{symbol}-{quote.side}-{uuid.uuid4().hex[:12]}",
            },
        )

    def replace(self, order_id: str, quote: Quote) -> None:
        self._send(
            "PATCH", f"/v2/orders/{order_id}", {"qty": str(quote.qty), "limit_price": str(quote.price)}
        )

    def cancel(self, order_id: str) -> None:
        self._send("DELETE", f"/v2/orders/{order_id}")

    def cancel_all(self) -> None:
        self._send("DELETE", "/v2/orders")

    # ------------------------------------------------------------------ the loop
    def refresh(self, symbol: str) -> None:
        ref, tick = self.asset(symbol)
        if ref is None:
            return
        position = self.position(symbol)
        start = self.start_position.setdefault(symbol, position)
        wanted = {
            q.side: q
            for q in quotes_for(
                reference=ref,
                tick=tick,
                half_spread=self.config.half_spread,
                qty=self.config.qty,
                inventory_change=position - start,
                max_inventory=self.config.max_inventory,
            )
        }
        by_side: dict[str, list[dict[str, Any]]] = {"buy": [], "sell": []}
        for order in self.open_orders(symbol):
            by_side.setdefault(order["side"], []).append(order)
        # Move the side that gets out of the way first, so the new quote never meets our own old one.
        sides = (
            ["sell", "buy"] if "buy" in wanted and self._would_cross(wanted["buy"], by_side["sell"]) else None
        )
        for side in sides or ["buy", "sell"]:
            self._refresh_side(symbol, wanted.get(side), by_side.get(side, []))

    @staticmethod
    def _would_cross(bid: Quote, asks: Iterable[dict[str, Any]]) -> bool:
        return any(Decimal(a["limit_price"]) <= bid.price for a in asks if a.get("limit_price"))

    def _refresh_side(self, symbol: str, quote: Quote | None, orders: list[dict[str, Any]]) -> None:
        if any(o["status"] not in LIVE for o in orders):
            return  # a pending new/replace/cancel: look again next round
        keep, extra = (orders[-1], orders[:-1]) if orders else (None, [])
        for order in extra:
            self.cancel(order["id"])
        if quote is None:
            if keep is not None:
                self.cancel(keep["id"])
            return
        if keep is None:
            self.submit(symbol, quote)
            return
        remaining = Decimal(keep["qty"]) - Decimal(keep.get("filled_qty") or 0)
        if Decimal(keep["limit_price"]) != quote.price or remaining != quote.qty:
            self.replace(keep["id"], quote)

    def run_once(self) -> None:
        for symbol in self.symbols():
            if self.stopping.is_set():
                return
            self.refresh(symbol)

    def run(self) -> None:
        """Quote until ``stopping`` is set (SIGTERM), then cancel every open order."""
        logger.info("market maker starting", extra={"base_url": self.config.base_url})
        try:
            while not self.stopping.is_set():
                try:
                    self.run_once()
                except (httpx.HTTPError, KeyError, ValueError) as exc:
                    # The web process restarting (or not up yet): keep trying, never crash the demo.
                    logger.warning(
                        "market maker round failed", extra={"error": f"{type(exc).__name__}: {exc}"}
                    )
                self.stopping.wait(self.config.refresh_s)
        finally:
            try:
                self.cancel_all()
                logger.info("market maker stopped; open orders canceled")
            except httpx.HTTPError as exc:
                logger.warning("market maker could not cancel its orders", extra={"error": str(exc)})
            self.client.close()
