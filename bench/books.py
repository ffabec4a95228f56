"""Thin adapters that drive every order book through the same generic workload (``bench.engine_core``).

Generic op: ``(kind, order_id, is_buy, qty, price, old_id)`` with integer shares and integer ticks ($0.01).
Each adapter converts the ops to its book's native inputs *before* timing (``native``; command structs, order
objects, argument tuples), then ``step(x)`` applies one and returns its raw result; ``filled(result)`` (untimed)
turns that into the taker's filled shares and ``resting()`` counts live resting orders.

Semantics every adapter maps onto (they are the engine's, docs/engine.md):
- LIMIT: match at the limit, rest the remainder. IOC: match, cancel the remainder. MARKET: match at any price,
  cancel the remainder. CANCEL of an unknown/finished order: no effect. REPLACE: if ``old_id`` is live, cancel it
  and submit ``order_id`` as a new limit (loses time priority); otherwise nothing happens.
- The workload gives every order its own account, so the engine's self-trade prevention never fires.
Library mappings (where an API lacks the operation):
- orderly-chaos: IOC = ``limit`` then ``cancel`` of the rested remainder; REPLACE = ``has``+``cancel``+``limit``.
- pyorderbook: no IOC, market or replace; IOC = ``match`` then ``cancel`` of the remainder; MARKET = IOC at
  an extreme price (1e9 ticks buy / 1 tick sell); prices become ``Decimal`` (its API) when the order objects are
  prebuilt, untimed.
- liquibook (SWIG): needs an ``OrderListener`` director to learn fills and cancel outcomes, so its Python
  callbacks (on_accept/on_fill/on_cancel ...) are part of its figure; MARKET = price 0 with
  immediate-or-cancel (a plain price-0 order would rest its remainder); REPLACE = ``cancel`` (checked through
  ``on_cancel``) + ``add``.
"""

from __future__ import annotations

import importlib
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

from bench.refbook import RefBook

LIMIT, IOC, MARKET, CANCEL, REPLACE = range(5)
KIND_NAMES = ("limit", "ioc", "market", "cancel", "replace")
Op = tuple[int, int, bool, int, int, int]

SHARE = 1_000_000_000  # qty_e9 per share
TICK_E4 = 100  # price_e4 per tick ($0.01)


class Adapter:
    name = ""
    step: Callable[[Any], Any]

    def native(self, ops: Sequence[Op]) -> list[Any]:
        return list(ops)

    def filled(self, result: Any) -> int:
        return int(result)

    def resting(self) -> int:
        raise NotImplementedError


class PythonEngineAdapter(Adapter):
    """``engine.Engine``, the Python specification of the engine (compiled with mypyc when built): one
    ``apply(seq, command)`` per op, commands prebuilt (as decoded from Kafka)."""

    name = "engine-python"

    def __init__(self) -> None:
        from engine import Engine
        from engine.events import TradeExecuted

        self.engine = Engine()
        self._trade = TradeExecuted
        apply = self.engine.apply
        seq = itertools.count(1).__next__
        self.step = lambda c: apply(seq(), c)

    def native(self, ops: Sequence[Op]) -> list[Any]:
        from engine import CancelOrder, NewOrder, ReplaceOrder

        out: list[Any] = []
        for kind, oid, buy, qty, px, old in ops:
            side: Literal["buy", "sell"] = "buy" if buy else "sell"
            if kind == CANCEL:
                out.append(CancelOrder(order_id=f"o{oid}"))
            elif kind == REPLACE:
                out.append(
                    ReplaceOrder(order_id=f"o{old}", new_order_id=f"o{oid}", qty_e9=qty * SHARE,
                                 limit_price_e4=px * TICK_E4)
                )  # fmt: skip
            elif kind == MARKET:
                out.append(
                    NewOrder(order_id=f"o{oid}", account_id=f"a{oid}", symbol="BENCH", side=side, type="market",
                             tif="day", qty_e9=qty * SHARE)
                )  # fmt: skip
            else:
                out.append(
                    NewOrder(order_id=f"o{oid}", account_id=f"a{oid}", symbol="BENCH", side=side, type="limit",
                             tif="ioc" if kind == IOC else "gtc", qty_e9=qty * SHARE, limit_price_e4=px * TICK_E4)
                )  # fmt: skip
        return out

    def filled(self, result: Any) -> int:
        t = self._trade
        return sum(e.qty_e9 for e in result if type(e) is t) // SHARE

    def resting(self) -> int:
        return len(self.engine.orders)


class EngineAdapter(PythonEngineAdapter):
    """The platform's engine, ``engine_native.Engine`` (Rust; what ``run_engine`` runs with the default
    ``ENGINE_IMPLEMENTATION=native``): the same prebuilt commands and the same events as ``engine-python``; built
    and installed (here and in the bench venv) by ``scripts/build_engine_native.py``."""

    name = "engine"

    def __init__(self) -> None:
        from engine.events import TradeExecuted
        from engine_native import Engine

        self.engine = Engine()  # type: ignore[assignment]
        self._trade = TradeExecuted
        apply = self.engine.apply
        seq = itertools.count(1).__next__
        self.step = lambda c: apply(seq(), c)


class ReferenceAdapter(Adapter):
    name = "reference"

    def __init__(self) -> None:
        book = self.book = RefBook()
        limit, ioc, market, cancel = book.limit, book.ioc, book.market, book.cancel

        def step(op: Op) -> int:
            kind, oid, buy, qty, px, old = op
            if kind == LIMIT:
                return limit(oid, buy, qty, px)
            if kind == IOC:
                return ioc(buy, qty, px)
            if kind == MARKET:
                return market(buy, qty)
            if kind == CANCEL:
                cancel(oid)
                return 0
            if cancel(old):
                return limit(oid, buy, qty, px)
            return 0

        self.step = step

    def resting(self) -> int:
        return len(self.book)


class OrderlyChaosAdapter(Adapter):
    name = "orderly-chaos"

    def __init__(self) -> None:
        oc = importlib.import_module("orderly_chaos")
        book = self.book = oc.LimitOrderBook()
        buy_side, sell_side = oc.Side.BUY, oc.Side.SELL
        limit, market, cancel, has = book.limit, book.market, book.cancel, book.has

        def step(op: tuple[int, int, Any, int, int, int]) -> int:
            kind, oid, side, qty, px, old = op
            if kind == LIMIT:
                return limit(side, oid, qty, px)  # type: ignore[no-any-return]
            if kind == IOC:
                f = limit(side, oid, qty, px)
                if f < qty:
                    cancel(oid)
                return f  # type: ignore[no-any-return]
            if kind == MARKET:
                return market(side, oid, qty)  # type: ignore[no-any-return]
            if kind == CANCEL:
                if has(oid):
                    cancel(oid)
                return 0
            if has(old):
                cancel(old)
                return limit(side, oid, qty, px)  # type: ignore[no-any-return]
            return 0

        self.step = step
        self._sides = (sell_side, buy_side)

    def native(self, ops: Sequence[Op]) -> list[Any]:
        s = self._sides
        return [(k, oid, s[buy], qty, px, old) for k, oid, buy, qty, px, old in ops]

    def resting(self) -> int:
        return int(self.book.count())


class PyOrderBookAdapter(Adapter):
    name = "pyorderbook"

    def __init__(self) -> None:
        pob = importlib.import_module("pyorderbook")
        self._pob = pob
        book = self.book = pob.Book()
        match, cancel, live = book.match, book.cancel, book.order_map
        by_id: dict[int, Any] = {}

        def step(op: tuple[int, int, Any, int]) -> int:
            kind, oid, order, old = op
            if kind == LIMIT:
                by_id[oid] = order
                q = order.quantity
                match(order)
                return q - order.quantity  # type: ignore[no-any-return]
            if kind in (IOC, MARKET):
                q = order.quantity
                match(order)
                if order.quantity:
                    cancel(order)
                return q - order.quantity  # type: ignore[no-any-return]
            if kind == CANCEL:
                o = by_id.pop(oid, None)
                if o is not None and o.id in live:
                    cancel(o)
                return 0
            o = by_id.pop(old, None)
            if o is not None and o.id in live:
                cancel(o)
                by_id[oid] = order
                q = order.quantity
                match(order)
                return q - order.quantity  # type: ignore[no-any-return]
            return 0

        self.step = step

    def native(self, ops: Sequence[Op]) -> list[Any]:
        bid, ask = self._pob.bid, self._pob.ask
        out: list[Any] = []
        for kind, oid, buy, qty, px, old in ops:
            if kind == CANCEL:
                out.append((kind, oid, None, old))
                continue
            if kind == MARKET:
                px = 10**9 if buy else 1
            out.append((kind, oid, (bid if buy else ask)("BENCH", px, qty), old))
        return out

    def resting(self) -> int:
        return len(self.book.order_map)


class LiquibookAdapter(Adapter):
    name = "liquibook"

    def __init__(self) -> None:
        lb = importlib.import_module("liquibook")
        self._lb = lb

        class Listener(lb.OrderListener):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                lb.OrderListener.__init__(self)
                self.filled_qty = 0
                self.canceled = False

            def on_fill(self, order: Any, matched: Any, qty: int, cost: int) -> None:
                self.filled_qty += qty

            def on_cancel(self, order: Any) -> None:
                self.canceled = True

            def on_accept(self, order: Any) -> None:
                pass

            def on_reject(self, order: Any, reason: str) -> None:
                pass

            def on_cancel_reject(self, order: Any, reason: str) -> None:
                pass

            def on_replace(self, order: Any, delta: int, price: int) -> None:
                pass

            def on_replace_reject(self, order: Any, reason: str) -> None:
                pass

        book = self.book = lb.liquibook_book_OrderBook()
        listener = self.listener = Listener()
        book.set_order_listener(listener)
        add, cancel = book.add, book.cancel
        ioc_flag = lb.oc_immediate_or_cancel
        by_id: dict[int, Any] = {}

        def step(op: tuple[int, int, Any, int]) -> int:
            kind, oid, order, old = op
            before = listener.filled_qty
            if kind == LIMIT:
                by_id[oid] = order
                add(order, 0)
            elif kind in (IOC, MARKET):
                add(order, ioc_flag)
            elif kind == CANCEL:
                o = by_id.pop(oid, None)
                if o is not None:
                    cancel(o)
                return 0
            else:
                o = by_id.pop(old, None)
                if o is None:
                    return 0
                listener.canceled = False
                cancel(o)
                if not listener.canceled:
                    return 0
                by_id[oid] = order
                add(order, 0)
            return listener.filled_qty - before

        self.step = step

    def native(self, ops: Sequence[Op]) -> list[Any]:
        so, ioc_flag = self._lb.SimpleOrder, self._lb.oc_immediate_or_cancel
        out: list[Any] = []
        for kind, oid, buy, qty, px, old in ops:
            if kind == CANCEL:
                out.append((kind, oid, None, old))
            elif kind == MARKET:
                out.append((kind, oid, so(buy, 0, qty, 0, ioc_flag), old))
            elif kind == IOC:
                out.append((kind, oid, so(buy, px, qty, 0, ioc_flag), old))
            else:
                out.append((kind, oid, so(buy, px, qty), old))
        return out

    def resting(self) -> int:
        return len(self.book.bids()) + len(self.book.asks())


class MachineFloorAdapter(Adapter):
    """A busy-wait of a fixed 5 us per op (about one engine op), no book. Whatever its latency adds above 5 us is
    the timer plus the shared machine (preemption by other processes, interrupts), measured over a pass as long as
    the books' passes, in the same round; its p99.9 is the floor under every other variant's p99.9."""

    name = "machine-floor"

    def __init__(self) -> None:
        self.step = _spin_5us

    def resting(self) -> int:
        return 0


def _spin_5us(op: Any, _clock: Callable[[], int] = time.perf_counter_ns) -> int:
    end = _clock() + 5_000
    while _clock() < end:
        pass
    return 0


ADAPTERS: dict[str, type[Adapter]] = {
    a.name: a
    for a in (
        ReferenceAdapter,
        EngineAdapter,
        PythonEngineAdapter,
        OrderlyChaosAdapter,
        LiquibookAdapter,
        PyOrderBookAdapter,
        MachineFloorAdapter,
    )
}


def available() -> dict[str, str | None]:
    """Variant name -> None if importable here, else the reason it is skipped."""
    out: dict[str, str | None] = {}
    for name, mod in (
        ("engine", "engine_native"),
        ("orderly-chaos", "orderly_chaos"),
        ("liquibook", "liquibook"),
        ("pyorderbook", "pyorderbook"),
    ):
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            if name == "engine":
                out[name] = (
                    f"not built ({exc}); run scripts/build_engine_native.py (installs it in the bench venv)"
                )
            else:
                out[name] = f"not installed ({exc}); run through `python -m bench` (bench venv)"
        else:
            out[name] = None
    engine = {"engine": out.pop("engine")}
    return {"reference": None, **engine, "engine-python": None, **out, "machine-floor": None}
