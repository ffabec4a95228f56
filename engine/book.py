"""One symbol's order book: continuous matching, stops, order classes and auctions.

Invariants (checked by tests/engine):
- Price-time priority: better price first, then earlier ``arrival`` (a per-book counter); a fill always
  prints at the resting (maker) order's price. Auctions print every match at one uncross price.
- At rest (between commands) the book is never crossed: best bid < best ask.
- For every order: qty = cum (filled) + leaves (resting/pending) + canceled/expired quantity.
- An incoming order never trades with a resting order of the same ``account_id``: the resting order is
  canceled (reason ``self_trade``) and matching continues.
- Price ladder: ``bids``/``asks`` map price -> ``Level`` and hold only levels with live orders (``count`` >
  0; a level is removed the moment it empties). ``bid_keys`` is the sorted list of bid prices and ``ask_keys``
  the sorted list of negated ask prices, so the best level of either side is ``keys[-1]`` (O(1) peek and
  pop; a new or emptied level costs one bisect plus a short memmove). Dead orders stay in a level's FIFO
  until they reach its head (O(1) cancel); ``Level.qty``/``count`` only ever count live orders.
- Nothing here reads a clock, a random source, or iterates an unordered container: determinism is structural.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from heapq import heapify, heappop, heappush
from typing import Any, Final

from mypy_extensions import mypyc_attr

from engine.commands import PRICE_E4_MAX, QTY_E9_MAX
from engine.events import (
    BookLevelChanged,
    Event,
    OrderAccepted,
    OrderActivated,
    OrderAdjusted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderReplaced,
    OrderTriggered,
    SplitApplied,
    TradeExecuted,
)
from engine.state import OrderState

# Order.state
HELD: Final = 0  # bracket/OTO child waiting for its parent
PENDING: Final = 1  # stop / stop_limit / trailing_stop waiting for its trigger
RESTING: Final = 2  # in a price level
AUCTION: Final = 3  # opg / cls order waiting for the uncross
ACTIVE: Final = 4  # being matched as the incoming (taker) order
DONE: Final = 5  # terminal; removed from every structure

STOP_TYPES: Final = frozenset({"stop", "stop_limit", "trailing_stop"})
BPS: Final = 10_000
SHARE: Final = 1_000_000_000  # qty_e9 of one whole share


@mypyc_attr(acyclic=True, free_list_len=1)
class Order:
    """Mutable engine-side order (a native class when compiled); ``OrderState`` is its snapshot form."""

    __slots__ = (
        "account_id",
        "arrival",
        "children",
        "cum",
        "extended_hours",
        "is_buy",
        "leaves",
        "limit",
        "notional",
        "notional_left",
        "oco",
        "order_id",
        "otype",
        "parent",
        "qty",
        "state",
        "stop",
        "symbol",
        "tif",
        "trail_bps",
        "trail_price",
        "water",
    )

    def __init__(
        self,
        order_id: str,
        account_id: str,
        symbol: str,
        is_buy: bool,
        otype: str,
        tif: str,
        qty: int,
        notional: int,
        notional_left: int,
        limit: int,
        stop: int,
        trail_price: int,
        trail_bps: int,
        water: int,
        leaves: int,
        cum: int,
        arrival: int,
        state: int,
        oco: str = "",
        parent: str = "",
        children: tuple[str, ...] = (),
        extended_hours: bool = False,
    ) -> None:
        self.order_id = order_id
        self.account_id = account_id
        self.symbol = symbol
        self.is_buy = is_buy
        self.otype = otype
        self.tif = tif
        self.qty = qty
        self.notional = notional
        self.notional_left = notional_left
        self.limit = limit
        self.stop = stop
        self.trail_price = trail_price
        self.trail_bps = trail_bps
        self.water = water
        self.leaves = leaves
        self.cum = cum
        self.arrival = arrival
        self.state = state
        self.oco = oco
        self.parent = parent
        self.children = children
        self.extended_hours = extended_hours

    def to_state(self) -> OrderState:
        return OrderState(
            self.order_id,
            self.account_id,
            self.symbol,
            self.is_buy,
            self.otype,
            self.tif,
            self.qty,
            self.notional,
            self.notional_left,
            self.limit,
            self.stop,
            self.trail_price,
            self.trail_bps,
            self.water,
            self.leaves,
            self.cum,
            self.arrival,
            self.state,
            self.oco,
            self.parent,
            self.children,
            self.extended_hours,
        )

    @staticmethod
    def from_state(s: OrderState) -> Order:
        return Order(
            s.order_id,
            s.account_id,
            s.symbol,
            s.is_buy,
            s.otype,
            s.tif,
            s.qty,
            s.notional,
            s.notional_left,
            s.limit,
            s.stop,
            s.trail_price,
            s.trail_bps,
            s.water,
            s.leaves,
            s.cum,
            s.arrival,
            s.state,
            s.oco,
            s.parent,
            s.children,
            s.extended_hours,
        )


# mypyc looks a plain imported name up in the module's dict at every use; a ``Final`` alias is a C static
# (the hot paths build events and walk the ladder through these).
_BookLevelChanged: Final = BookLevelChanged
_OrderAccepted: Final = OrderAccepted
_OrderCanceled: Final = OrderCanceled
_OrderFilled: Final = OrderFilled
_TradeExecuted: Final = TradeExecuted
_OrderReplaced: Final = OrderReplaced
_OrderExpired: Final = OrderExpired
_OrderTriggered: Final = OrderTriggered
_OrderActivated: Final = OrderActivated
_insort: Final = insort
_bisect_left: Final = bisect_left
_heappush: Final = heappush
_QTY_E9_MAX: Final = QTY_E9_MAX
_heappop: Final = heappop
_heapify: Final = heapify
_deque: Final = deque


def _arrival(o: Order) -> int:
    return o.arrival


@mypyc_attr(acyclic=True)
class Level:
    """One price level: live aggregate ``qty``/``count`` and a FIFO that may hold dead orders."""

    __slots__ = ("count", "fifo", "qty")

    def __init__(self) -> None:
        self.qty = 0
        self.count = 0
        self.fifo: deque[Order] = _deque()


def trailing_stop_price(is_buy: bool, water: int, trail_price: int, trail_bps: int) -> int:
    """Stop price from the water mark; a sell stop rounds down and a buy stop rounds up (never tighter)."""
    if trail_price:
        return water + trail_price if is_buy else water - trail_price
    if is_buy:
        return -((-water * (BPS + trail_bps)) // BPS)
    return (water * (BPS - trail_bps)) // BPS


def split_price(value: int, num: int, den: int, tick: int, up: bool) -> int:
    """``value * den / num`` on the ``tick`` grid, rounded up or down, never below one tick; 0 stays 0.

    The same rule as ``apps.orders.services._split_price`` applies to the Order rows (they must agree).
    """
    if not value:
        return 0
    n = value * den
    d = num * tick
    ticks = -(-n // d) if up else n // d
    return (ticks if ticks > 1 else 1) * tick


def split_qty(value: int, num: int, den: int, whole: bool) -> int:
    """``value * num / den`` rounded down to the 1e-9 quantum, or to whole shares when ``whole``."""
    q = value * num // den
    return q - q % SHARE if whole else q


def split_keeps(o: Order, num: int, den: int, tick: int) -> bool:
    """Whether ``o`` stays live through a ``num``-for-``den`` split: leaves that do not round to 0, and terms
    inside the engine's domain (``engine.commands``): qty at most ``QTY_E9_MAX``, limit, trail price and water
    mark at most ``PRICE_E4_MAX``, and the stop too unless it trails (a trailing stop derives from its water mark).

    Without the bound, compounding splits would carry amounts beyond what a snapshot encodes (64 bits). The same
    rule as ``apps.orders.services._split_in_domain`` on the Order rows (they must agree).
    """
    whole = not o.is_buy or o.leaves % SHARE == 0
    leaves = split_qty(o.leaves, num, den, whole)
    if not leaves or split_qty(o.cum, num, den, False) + leaves > QTY_E9_MAX:
        return False
    if o.otype != "trailing_stop" and split_price(o.stop, num, den, tick, o.is_buy) > PRICE_E4_MAX:
        return False
    return (
        split_price(o.limit, num, den, tick, not o.is_buy) <= PRICE_E4_MAX
        and split_price(o.trail_price, num, den, tick, False) <= PRICE_E4_MAX
        and split_price(o.water, num, den, tick, False) <= PRICE_E4_MAX
    )


def split_mark(value: int, num: int, den: int, tick: int) -> int:
    """A book's last or reference price through a split: down on the tick, at most the domain's top tick."""
    return min(split_price(value, num, den, tick, False), PRICE_E4_MAX - PRICE_E4_MAX % tick)


class OrderBook:
    """Single-writer book for one symbol; ``Engine`` calls its methods between ``begin`` and ``end``."""

    def __init__(self, symbol: str, orders: dict[str, Order]) -> None:
        self.symbol = symbol
        self.orders = orders  # shared by every book of the engine: order_id -> live order
        self.bids: dict[int, Level] = {}  # live levels only
        self.asks: dict[int, Level] = {}
        self.bid_keys: list[int] = []  # sorted prices: best bid = bid_keys[-1]
        self.ask_keys: list[int] = []  # sorted negated prices: best ask = -ask_keys[-1]
        self.buy_stops: list[tuple[int, int, str]] = []  # (stop, arrival, id): triggers when last >= stop
        self.sell_stops: list[tuple[int, int, str]] = []  # (-stop, arrival, id): triggers when last <= stop
        self.trailing: dict[str, Order] = {}
        self.opg: dict[str, Order] = {}
        self.cls: dict[str, Order] = {}
        self.last_price = 0
        self.ref_price = 0
        self.halted = False
        self.book_seq = 0
        self.arrival = 0
        # Per-command scratch state.
        self.out: list[Event] = []
        self.seq = 0
        self.match_n = 0
        self.prices: list[int] = []
        self.to_activate: list[Order] = []
        self.dirty_bid: dict[int, None] = {}
        self.dirty_ask: dict[int, None] = {}

    # ------------------------------------------------------------------ command framing
    def begin(self, out: list[Event], seq: int) -> None:
        self.out = out
        self.seq = seq
        self.match_n = 0

    def end(self) -> None:
        """Run cascaded work (leg activations, stop triggers) and publish L2 deltas for touched levels."""
        if self.to_activate:
            self._drain()
        elif self.prices:
            if self.buy_stops or self.sell_stops or self.trailing:
                self._drain()
            else:
                self.prices.clear()  # no stop can trigger: _drain would find nothing
        if self.dirty_bid or self.dirty_ask:
            self._publish_levels()

    def _publish_levels(self) -> None:
        out = self.out
        sym, seq, bs = self.symbol, self.seq, self.book_seq
        dirty = self.dirty_bid
        if dirty:
            levels = self.bids
            for p in dirty:
                bs += 1
                lvl = levels.get(p)
                if lvl is None:
                    out.append(_BookLevelChanged(sym, bs, seq, "buy", p, 0, 0))
                else:
                    out.append(_BookLevelChanged(sym, bs, seq, "buy", p, lvl.qty, lvl.count))
            dirty.clear()
        dirty = self.dirty_ask
        if dirty:
            levels = self.asks
            for p in dirty:
                bs += 1
                lvl = levels.get(p)
                if lvl is None:
                    out.append(_BookLevelChanged(sym, bs, seq, "sell", p, 0, 0))
                else:
                    out.append(_BookLevelChanged(sym, bs, seq, "sell", p, lvl.qty, lvl.count))
            dirty.clear()
        self.book_seq = bs

    def next_arrival(self) -> int:
        self.arrival += 1
        return self.arrival

    def next_book_seq(self) -> int:
        self.book_seq += 1
        return self.book_seq

    # ------------------------------------------------------------------ queries
    def best_bid(self) -> int | None:
        keys = self.bid_keys
        return keys[-1] if keys else None

    def best_ask(self) -> int | None:
        keys = self.ask_keys
        return -keys[-1] if keys else None

    def depth(self, is_buy: bool) -> list[tuple[int, int, int]]:
        """(price, qty, count) per live level, best first."""
        levels = self.bids if is_buy else self.asks
        prices = sorted((p for p, lvl in levels.items() if lvl.count), reverse=is_buy)
        return [(p, levels[p].qty, levels[p].count) for p in prices]

    def level_orders(self, is_buy: bool) -> list[tuple[int, list[str]]]:
        """Live order ids per level in priority order (canonical form for snapshots and hashes)."""
        levels = self.bids if is_buy else self.asks
        res = []
        for p in sorted((p for p, lvl in levels.items() if lvl.count), reverse=is_buy):
            res.append((p, [o.order_id for o in levels[p].fifo if o.state == RESTING]))
        return res

    # ------------------------------------------------------------------ entry points
    def accept(self, o: Order, parent_id: str = "") -> None:
        self.orders[o.order_id] = o
        self.book_seq += 1
        self.out.append(
            _OrderAccepted(
                self.symbol,
                self.book_seq,
                self.seq,
                o.order_id,
                o.account_id,
                "buy" if o.is_buy else "sell",
                o.otype,
                o.tif,
                o.qty,
                o.notional,
                o.limit,
                o.stop,
                parent_id,
            )
        )

    def submit_plain(
        self, oid: str, account_id: str, side: str, otype: str, tif: str, qty: int, p: int
    ) -> None:
        """``accept`` + ``route`` + ``end`` for a validated simple limit/market order by quantity (hot path).

        A limit that does not cross cannot trade: a day/gtc one rests straight away and an ioc one is canceled
        (``ioc_remainder``) without ever building its ``Order``; that is exactly what ``_take`` would do
        (``_match`` stops at once and marks no level). Everything else goes through ``_take`` and ``end``.
        """
        self.arrival = arrival = self.arrival + 1
        out, sym = self.out, self.symbol
        seq: Any = self.seq  # boxed once for both events (see ``_match``)
        p_b: Any = p
        bs = self.book_seq + 1
        out.append(_OrderAccepted(sym, bs, seq, oid, account_id, side, otype, tif, qty, 0, p_b, 0, ""))
        is_buy = side == "buy"
        if p and tif != "fok":
            if is_buy:
                keys = self.ask_keys
                crosses = keys and -keys[-1] <= p
            else:
                keys = self.bid_keys
                crosses = keys and keys[-1] >= p
            if not crosses:
                self.book_seq = bs + 1
                if tif == "ioc":
                    out.append(_OrderCanceled(sym, bs + 1, seq, oid, "ioc_remainder", 0, qty))
                    return
                o = Order(
                    oid,
                    account_id,
                    sym,
                    is_buy,
                    otype,
                    tif,
                    qty,
                    0,
                    0,
                    p,
                    0,
                    0,
                    0,
                    0,
                    qty,
                    0,
                    arrival,
                    RESTING,
                )
                self.orders[oid] = o
                levels = self.bids if is_buy else self.asks
                lvl = levels.get(p)
                if lvl is None:
                    lvl = levels[p] = Level()
                    if is_buy:
                        _insort(self.bid_keys, p)
                    else:
                        _insort(self.ask_keys, -p)
                lvl.fifo.append(o)
                lvl.qty += qty
                lvl.count += 1
                out.append(_BookLevelChanged(sym, bs + 1, seq, side, p_b, lvl.qty, lvl.count))
                return
        o = Order(
            oid,
            account_id,
            sym,
            is_buy,
            otype,
            tif,
            qty,
            0,
            0,
            p,
            0,
            0,
            0,
            0,
            qty,
            0,
            arrival,
            HELD,
        )
        self.orders[oid] = o
        self.book_seq = bs
        self._take(o)
        self.end()

    def route(self, o: Order) -> None:
        """Send an accepted (or activated, or replacement) order to the auction, the stop book or matching."""
        if o.tif == "opg" or o.tif == "cls":
            o.state = AUCTION
            (self.opg if o.tif == "opg" else self.cls)[o.order_id] = o
        elif o.otype in STOP_TYPES:
            self._add_stop(o)
        else:
            self._take(o)

    def cancel_resting(self, o: Order, seq: int) -> list[Event]:
        """A user cancel of a resting order without class links: the whole command (begin..end) inlined."""
        p = o.limit
        leaves = o.leaves
        if o.is_buy:
            lvl = self.bids[p]
            side = "buy"
        else:
            lvl = self.asks[p]
            side = "sell"
        qty = lvl.qty = lvl.qty - leaves
        count = lvl.count = lvl.count - 1
        if not count:
            self._drop_level(o.is_buy, p)
            qty = 0
        o.state = DONE
        del self.orders[o.order_id]
        sym = self.symbol
        bs = self.book_seq
        self.book_seq = bs + 2
        return [
            _OrderCanceled(sym, bs + 1, seq, o.order_id, "user", o.cum, leaves),
            _BookLevelChanged(sym, bs + 2, seq, side, p, qty, count),
        ]

    def cancel(self, o: Order, reason: str) -> None:
        self._remove(o)
        bs = self.book_seq = self.book_seq + 1
        self.out.append(_OrderCanceled(self.symbol, bs, self.seq, o.order_id, reason, o.cum, o.leaves))
        if o.oco or o.children:
            self._on_terminal(o, activate=True)

    def expire(self, o: Order) -> None:
        self._remove(o)
        self.book_seq += 1
        self.out.append(_OrderExpired(self.symbol, self.book_seq, self.seq, o.order_id, o.cum, o.leaves))
        self._on_terminal(o, activate=False)

    def replace(self, old: Order, new: Order) -> None:
        """Cancel-and-new: ``new`` takes a fresh arrival (loses priority) and inherits old's class links."""
        self._remove(old)
        self.book_seq += 1
        self.out.append(
            _OrderReplaced(
                self.symbol,
                self.book_seq,
                self.seq,
                old.order_id,
                new.order_id,
                old.cum,
            )
        )
        if old.oco:
            sib = self.orders.get(old.oco)
            if sib is not None:
                sib.oco = new.order_id
                new.oco = sib.order_id
        new.children = old.children
        for cid in new.children:
            child = self.orders.get(cid)
            if child is not None:
                child.parent = new.order_id
        new.parent = old.parent
        self.accept(new, new.parent)
        self.route(new)

    def replace_plain(self, old: Order, new_id: str, qty: int, p: int, tif: str) -> None:
        """``replace`` + ``end`` for a resting plain limit without class links, replaced by a day/gtc limit.

        When the new price does not cross, the replacement rests straight away (what ``route`` -> ``_take``
        would do); otherwise the general path runs. Events and their order are those of ``replace``.
        """
        is_buy = old.is_buy
        self.arrival += 1
        new = Order(
            new_id,
            old.account_id,
            old.symbol,
            is_buy,
            "limit",
            tif,
            qty,
            0,
            0,
            p,
            0,
            0,
            0,
            0,
            qty,
            0,
            self.arrival,
            HELD,
            "",
            old.parent,
        )
        if is_buy:
            keys = self.ask_keys
            crosses = keys and -keys[-1] <= p
        else:
            keys = self.bid_keys
            crosses = keys and keys[-1] >= p
        if crosses:
            self.replace(old, new)
            self.end()
            return
        self._remove(old)
        out, sym, seq = self.out, self.symbol, self.seq
        bs = self.book_seq
        out.append(_OrderReplaced(sym, bs + 1, seq, old.order_id, new_id, old.cum))
        self.orders[new_id] = new
        out.append(
            _OrderAccepted(
                sym,
                bs + 2,
                seq,
                new_id,
                new.account_id,
                "buy" if is_buy else "sell",
                "limit",
                tif,
                qty,
                0,
                p,
                0,
                new.parent,
            )
        )
        self.book_seq = bs + 2
        self._rest(new)
        self._publish_levels()

    def split(self, split_id: str, num: int, den: int, tick: int) -> None:
        """Put every live order of this book on the terms of a ``num``-for-``den`` split (between begin/end).

        Rules (identical to ``apps.orders.services.orders_adjust_for_split`` on the Order rows):
        - leaves scale by num/den rounded down, to whole shares for a sell or a whole-share buy, else to the
          1e-9 quantum; cum scales by num/den rounded down; qty = cum + leaves. Notional orders keep their
          amounts. An order whose leaves round to 0, or whose new terms leave the domain (``split_keeps``), is
          canceled (``split``) first.
        - prices scale by den/num on the tick, in the customer's favour: buy limit and sell stop down, sell
          limit and buy stop up; trail price and water mark down; the book's last and reference prices down,
          to at most the domain's top tick (``split_mark``).
        - each price level is rebuilt holding its orders by ``arrival`` (time priority), so levels that
          merge keep price-time priority; stop heaps are rebuilt from the pending orders.
        Events: ``SplitApplied``, the ``split`` cancels, one ``OrderAdjusted`` per remaining order in
        acceptance order, then (at ``end``) ``BookLevelChanged`` for every old and new level.
        """
        sym = self.symbol
        self.book_seq += 1
        self.out.append(SplitApplied(sym, self.book_seq, self.seq, split_id, num, den, tick))
        for p in sorted(self.bids, reverse=True):
            self.dirty_bid[p] = None
        for p in sorted(self.asks):
            self.dirty_ask[p] = None
        for o in [o for o in self.orders.values() if o.symbol == sym]:
            if o.state == DONE or o.notional:
                continue  # canceled by an earlier cancel's cascade; notional orders never rest
            if not split_keeps(o, num, den, tick):
                self.cancel(o, "split")
        mine = [o for o in self.orders.values() if o.symbol == sym]
        for o in mine:
            if not o.notional:
                leaves = split_qty(o.leaves, num, den, not o.is_buy or o.leaves % SHARE == 0)
                o.cum = split_qty(o.cum, num, den, False)
                o.leaves = leaves
                o.qty = o.cum + leaves
            o.limit = split_price(o.limit, num, den, tick, not o.is_buy)
            o.stop = split_price(o.stop, num, den, tick, o.is_buy)
            o.trail_price = split_price(o.trail_price, num, den, tick, False)
            o.water = split_price(o.water, num, den, tick, False)
            self.book_seq += 1
            self.out.append(
                OrderAdjusted(
                    sym,
                    self.book_seq,
                    self.seq,
                    o.order_id,
                    o.account_id,
                    split_id,
                    o.qty,
                    o.leaves,
                    o.cum,
                    o.limit,
                    o.stop,
                    o.trail_price,
                    o.water,
                )
            )
        self.last_price = split_mark(self.last_price, num, den, tick)
        self.ref_price = split_mark(self.ref_price, num, den, tick)
        resting = sorted((o for o in mine if o.state == RESTING), key=_arrival)
        self.bids = {}
        self.asks = {}
        self.bid_keys = []
        self.ask_keys = []
        for o in resting:
            self._rest(o)
        self.buy_stops = []
        self.sell_stops = []
        for o in mine:
            if o.state == PENDING and o.otype != "trailing_stop":
                if o.is_buy:
                    self.buy_stops.append((o.stop, o.arrival, o.order_id))
                else:
                    self.sell_stops.append((-o.stop, o.arrival, o.order_id))
        _heapify(self.buy_stops)
        _heapify(self.sell_stops)

    # ------------------------------------------------------------------ internals
    def _remove(self, o: Order) -> None:
        """Take a live order out of whatever structure holds it and mark it DONE (no event)."""
        st = o.state
        if st == RESTING:
            p = o.limit
            if o.is_buy:
                lvl = self.bids[p]
                self.dirty_bid[p] = None
            else:
                lvl = self.asks[p]
                self.dirty_ask[p] = None
            lvl.qty -= o.leaves
            lvl.count -= 1
            if not lvl.count:
                self._drop_level(o.is_buy, p)
        elif st == PENDING:
            self.trailing.pop(o.order_id, None)  # plain stops are dropped lazily from their heap
        elif st == AUCTION:
            (self.opg if o.tif == "opg" else self.cls).pop(o.order_id, None)
        o.state = DONE
        del self.orders[o.order_id]

    def _drop_level(self, is_buy: bool, p: int) -> None:
        """Remove an emptied level (only dead orders left in its FIFO) from the dict and the ladder."""
        if is_buy:
            del self.bids[p]
            keys, k = self.bid_keys, p
        else:
            del self.asks[p]
            keys, k = self.ask_keys, -p
        i = len(keys) - 1
        if keys[i] != k:  # usually the best level; otherwise bisect
            i = _bisect_left(keys, k)
        del keys[i]

    def _on_terminal(self, o: Order, activate: bool) -> None:
        if o.oco:
            sib = self.orders.get(o.oco)
            o.oco = ""
            if sib is not None:
                sib.oco = ""
                self.cancel(sib, "oco_sibling")
        if o.children:
            for cid in o.children:
                child = self.orders.get(cid)
                if child is None or child.state != HELD:
                    continue
                if o.cum > 0:
                    if activate:
                        child.qty = child.leaves = o.cum
                        self.to_activate.append(child)
                else:
                    child.oco = ""  # report parent_canceled for each leg rather than oco_sibling
                    self.cancel(child, "parent_canceled")

    def _rest(self, o: Order) -> None:
        p = o.limit
        if o.is_buy:
            levels, dirty = self.bids, self.dirty_bid
        else:
            levels, dirty = self.asks, self.dirty_ask
        lvl = levels.get(p)
        if lvl is None:
            lvl = levels[p] = Level()
            if o.is_buy:
                _insort(self.bid_keys, p)
            else:
                _insort(self.ask_keys, -p)
        lvl.fifo.append(o)
        lvl.qty += o.leaves
        lvl.count += 1
        o.state = RESTING
        dirty[p] = None

    def _add_stop(self, o: Order) -> None:
        o.state = PENDING
        if o.otype == "trailing_stop":
            base = self.last_price or self.ref_price
            if base:
                o.water = base
                o.stop = trailing_stop_price(o.is_buy, base, o.trail_price, o.trail_bps)
            self.trailing[o.order_id] = o
            return
        if o.is_buy:
            _heappush(self.buy_stops, (o.stop, o.arrival, o.order_id))
        else:
            _heappush(self.sell_stops, (-o.stop, o.arrival, o.order_id))
        if self.last_price:
            # Re-evaluate against the current last price: a stop that is already through triggers now.
            self.prices.append(self.last_price)

    def _fok_ok(self, o: Order) -> bool:
        """Is there enough crossing, non-self liquidity to fill ``o`` completely? (no state change)"""
        need = o.leaves
        acct = o.account_id
        is_buy = o.is_buy
        limit = o.limit if o.otype == "limit" else None
        for p, lvl in (self.asks if is_buy else self.bids).items():
            if not lvl.count or (limit is not None and (p > limit if is_buy else p < limit)):
                continue
            for m in lvl.fifo:
                if m.state == RESTING and m.account_id != acct:
                    need -= m.leaves
                    if need <= 0:
                        return True
        return False

    def _take(self, o: Order) -> None:
        o.state = ACTIVE
        if o.tif == "fok" and not self._fok_ok(o):
            self.cancel(o, "fok_unfilled")
            return
        exhausted = self._match(o)
        if o.state != ACTIVE:
            return
        if o.notional:
            if exhausted or not o.cum:
                self.cancel(o, "market_no_liquidity")
            else:
                self._finish(o)
        elif not o.leaves:
            self._finish(o)
        elif o.otype == "market":
            self.cancel(o, "market_no_liquidity")
        elif o.tif == "ioc" or o.tif == "fok":
            self.cancel(o, "ioc_remainder")
        else:
            self._rest(o)

    def _finish(self, o: Order) -> None:
        o.state = DONE
        del self.orders[o.order_id]
        self._on_terminal(o, activate=True)

    def _match(self, o: Order) -> bool:
        """Match incoming ``o`` against the opposite side. Returns True when that side ran out.

        Each match prints ``TradeExecuted`` then the maker's and the taker's ``OrderFilled`` (book_seq +1..+3,
        ``trade_id = f"{seq}:{n}"``); the fill is inlined here because it is the innermost loop.
        """
        is_buy = o.is_buy
        if is_buy:
            levels, keys, dirty, sign = self.asks, self.ask_keys, self.dirty_ask, -1
            m_side, t_side, m_suf, t_suf = "sell", "buy", ":s", ":b"
        else:
            levels, keys, dirty, sign = self.bids, self.bid_keys, self.dirty_bid, 1
            m_side, t_side, m_suf, t_suf = "buy", "sell", ":b", ":s"
        limit = o.limit if o.otype == "limit" else 0
        notional = o.notional
        acct = o.account_id
        oid = o.order_id
        sym, seq, out, orders, prices = (
            self.symbol,
            self.seq,
            self.out,
            self.orders,
            self.prices,
        )
        # Values every event of a fill repeats, as Python ints once (compiled, an ``int`` local is unboxed and
        # would be boxed again for each event field it fills).
        seq_b: Any = seq
        tid_prefix = f"{seq}:"
        while keys:
            p = keys[-1] * sign
            p_b: Any = p
            if limit and (p > limit if is_buy else p < limit):
                return False
            if notional:
                want = o.notional_left // p
                room = _QTY_E9_MAX - o.cum  # a notional order fills at most the domain's largest quantity
                if want > room:
                    want = room
            else:
                want = o.leaves
            if not want:
                return False
            lvl = levels[p]
            fifo = lvl.fifo
            dirty[p] = None
            while want and lvl.count:
                m = fifo[0]
                if m.state != RESTING:
                    fifo.popleft()
                    continue
                if m.account_id == acct:
                    self.cancel(m, "self_trade")  # may drop the level
                    continue
                ml = m.leaves
                q = want if want < ml else ml
                want -= q
                if notional:
                    o.notional_left -= p * q
                n = self.match_n
                self.match_n = n + 1
                tid = tid_prefix + str(n)
                ml -= q
                m.leaves = ml
                m.cum = mc = m.cum + q
                lvl.qty -= q
                if not notional:
                    o.leaves -= q
                o.cum = tc = o.cum + q
                bs = self.book_seq
                mid = m.order_id
                q_b: Any = q
                if is_buy:
                    out.append(_TradeExecuted(sym, bs + 1, seq_b, tid, p_b, q_b, oid, mid, "buy"))
                else:
                    out.append(_TradeExecuted(sym, bs + 1, seq_b, tid, p_b, q_b, mid, oid, "sell"))
                out.append(
                    _OrderFilled(
                        sym,
                        bs + 2,
                        seq_b,
                        mid,
                        m.account_id,
                        m_side,
                        tid + m_suf,
                        tid,
                        p_b,
                        q_b,
                        ml,
                        mc,
                        "maker",
                    )
                )
                out.append(
                    _OrderFilled(
                        sym,
                        bs + 3,
                        seq_b,
                        oid,
                        acct,
                        t_side,
                        tid + t_suf,
                        tid,
                        p_b,
                        q_b,
                        o.leaves,
                        tc,
                        "taker",
                    )
                )
                self.book_seq = bs + 3
                self.last_price = p
                prices.append(p)
                if not ml:
                    lvl.count -= 1
                    m.state = DONE
                    del orders[mid]
                    if m.oco or m.children:
                        self._on_terminal(m, activate=True)
                    fifo.popleft()
                elif m.oco:
                    self._first_fill_oco(m)
                if o.oco:
                    self._first_fill_oco(o)
                if o.state != ACTIVE:
                    break
            if not lvl.count and levels.get(p) is lvl:
                # Emptied by fills (a self-trade cancel drops its level itself); it is the best level.
                del levels[p]
                keys.pop()
            if o.state != ACTIVE:
                return False
        return True

    def _first_fill_oco(self, o: Order) -> None:
        sib = self.orders.get(o.oco)
        o.oco = ""
        if sib is not None:
            sib.oco = ""
            self.cancel(sib, "oco_sibling")

    def _drain(self) -> None:
        while True:
            if self.to_activate:
                acts, self.to_activate = self.to_activate, []
                for child in acts:
                    if child.state != HELD:
                        continue
                    self.book_seq += 1
                    self.out.append(
                        _OrderActivated(
                            self.symbol,
                            self.book_seq,
                            self.seq,
                            child.order_id,
                            child.parent,
                            child.qty,
                        )
                    )
                    self.route(child)
                continue
            if self.prices:
                prices, self.prices = self.prices, []
                for o in self._collect_triggers(prices):
                    if o.state != ACTIVE:
                        continue  # canceled by an earlier trigger's fills (OCO)
                    self.book_seq += 1
                    self.out.append(
                        _OrderTriggered(
                            self.symbol,
                            self.book_seq,
                            self.seq,
                            o.order_id,
                            "limit" if o.otype == "stop_limit" else "market",
                            o.stop,
                            o.water,
                        )
                    )
                    o.otype = "limit" if o.otype == "stop_limit" else "market"
                    self._take(o)
                continue
            return

    def _collect_triggers(self, prices: list[int]) -> list[Order]:
        """Stops whose condition held at any of ``prices`` (in trade order); they are marked ACTIVE."""
        res: list[Order] = []
        orders = self.orders
        hi = max(prices)
        lo = min(prices)
        bs = self.buy_stops
        while bs and bs[0][0] <= hi:
            _, arrival, oid = _heappop(bs)
            o = orders.get(oid)
            if o is not None and o.state == PENDING and o.arrival == arrival:
                o.state = ACTIVE
                res.append(o)
        ss = self.sell_stops
        while ss and -ss[0][0] >= lo:
            _, arrival, oid = _heappop(ss)
            o = orders.get(oid)
            if o is not None and o.state == PENDING and o.arrival == arrival:
                o.state = ACTIVE
                res.append(o)
        if self.trailing:
            trailing = self.trailing
            for p in prices:
                fired: list[str] = []
                for oid, o in trailing.items():
                    if o.is_buy:
                        if not o.water or p < o.water:
                            o.water = p
                            o.stop = trailing_stop_price(True, p, o.trail_price, o.trail_bps)
                        if p >= o.stop:
                            fired.append(oid)
                    else:
                        if p > o.water:
                            o.water = p
                            o.stop = trailing_stop_price(False, p, o.trail_price, o.trail_bps)
                        if p <= o.stop:
                            fired.append(oid)
                for oid in fired:
                    o = trailing.pop(oid)
                    o.state = ACTIVE
                    res.append(o)
        return res

    # ------------------------------------------------------------------ auctions
    def uncross(self, auction: dict[str, Order]) -> None:
        """Single-price uncross of an auction book; every unfilled auction order is then canceled."""
        pending = list(auction.values())
        if self.halted:
            for o in pending:
                self.cancel(o, "halted")
            return
        price = self.auction_price(pending, self.ref_price or self.last_price)
        if price:
            buys = sorted(
                (o for o in pending if o.is_buy),
                key=lambda o: (o.otype != "market", -o.limit, o.arrival),
            )
            sells = sorted(
                (o for o in pending if not o.is_buy),
                key=lambda o: (o.otype != "market", o.limit, o.arrival),
            )
            bi = si = 0
            while bi < len(buys) and si < len(sells):
                b, s = buys[bi], sells[si]
                if b.state != AUCTION:
                    bi += 1
                    continue
                if s.state != AUCTION:
                    si += 1
                    continue
                if (b.otype == "limit" and b.limit < price) or (s.otype == "limit" and s.limit > price):
                    break
                if b.account_id == s.account_id:
                    self.cancel(b if b.arrival > s.arrival else s, "self_trade")
                    continue
                self._auction_fill(b, s, price, min(b.leaves, s.leaves))
        for o in list(auction.values()):
            self.cancel(o, "auction_unfilled")

    @staticmethod
    def auction_price(pending: list[Order], ref: int) -> int:
        """Max executed volume, then min imbalance, then closest to ``ref``, then lower. 0 = no cross."""
        cands = sorted({o.limit for o in pending if o.otype == "limit"} | ({ref} if ref else set()))
        best: tuple[int, int, int, int] | None = None
        for p in cands:
            bv = sum(o.leaves for o in pending if o.is_buy and (o.otype == "market" or o.limit >= p))
            sv = sum(o.leaves for o in pending if not o.is_buy and (o.otype == "market" or o.limit <= p))
            key = (-min(bv, sv), abs(bv - sv), abs(p - ref) if ref else 0, p)
            if best is None or key < best:
                best = key
        if best is None or best[0] == 0:
            return 0
        return best[3]

    def _auction_fill(self, b: Order, s: Order, p: int, q: int) -> None:
        n = self.match_n
        self.match_n = n + 1
        tid = f"{self.seq}:{n}"
        sym, seq, out = self.symbol, self.seq, self.out
        self.book_seq += 1
        out.append(_TradeExecuted(sym, self.book_seq, seq, tid, p, q, b.order_id, s.order_id, "auction"))
        for o, side in ((b, "buy"), (s, "sell")):
            o.leaves -= q
            o.cum += q
            self.book_seq += 1
            out.append(
                _OrderFilled(
                    sym,
                    self.book_seq,
                    seq,
                    o.order_id,
                    o.account_id,
                    side,
                    f"{tid}:{side[0]}",
                    tid,
                    p,
                    q,
                    o.leaves,
                    o.cum,
                    "auction",
                )
            )
        self.last_price = p
        self.prices.append(p)
        for o in (b, s):
            if not o.leaves:
                (self.opg if o.tif == "opg" else self.cls).pop(o.order_id, None)
                self._finish(o)

    # ------------------------------------------------------------------ restore helpers
    def rebuild(self, bids: list[tuple[int, list[str]]], asks: list[tuple[int, list[str]]]) -> None:
        """Rebuild levels, heaps and the stop books from the (already restored) shared order dict."""
        for side_levels, levels, keys, neg in (
            (bids, self.bids, self.bid_keys, False),
            (asks, self.asks, self.ask_keys, True),
        ):
            for p, ids in side_levels:
                lvl = levels[p] = Level()
                for oid in ids:
                    o = self.orders[oid]
                    lvl.fifo.append(o)
                    lvl.qty += o.leaves
                    lvl.count += 1
                keys.append(-p if neg else p)
            keys.sort()
        for o in self.orders.values():
            if o.symbol != self.symbol or o.state != PENDING or o.otype == "trailing_stop":
                continue
            if o.is_buy:
                self.buy_stops.append((o.stop, o.arrival, o.order_id))
            else:
                self.sell_stops.append((-o.stop, o.arrival, o.order_id))
        _heapify(self.buy_stops)
        _heapify(self.sell_stops)
