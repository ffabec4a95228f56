"""The partition engine: applies commands in input order to many per-symbol books.

Invariants:
- ``apply(seq, cmd)`` is a pure function of (state, seq, cmd): no clock, no randomness, no unordered
  iteration.
- ``seq`` strictly increases; a command with ``seq <= last_seq`` is a no-op returning ``[]``
  (idempotent replay).
- ``snapshot()`` is a canonical msgpack encoding of every live order and book; ``state_hash()`` is its sha256.
  Two engines that applied the same commands have identical snapshots, however they got there (restore+replay
  or straight through).
- Rejections that cannot be attached to a book carry ``symbol=""`` and ``book_seq=0``.
- ``SplitApply`` takes effect once per ``split_id``: the applied ids are part of the state (and of the
  snapshot from the first split on, ``EngineStateSplits``); a repeat is a no-op returning ``[]``.
- Split epochs: a ``SplitApply`` carrying ``split_epoch`` sets its symbol's epoch (``split_epochs``, in the
  snapshot from then on, ``EngineStateEpochs``). A ``NewOrder``/``ReplaceOrder`` carrying ``split_epoch`` is
  applied only when it equals the symbol's epoch (0 before any such split); otherwise it is rejected,
  ``split_epoch_stale`` (priced before a split the book has applied) or ``split_epoch_ahead`` (after one it
  has not). Without ``split_epoch`` an order command is not checked (older producers).
"""

from __future__ import annotations

import hashlib
from typing import Final

import msgspec
from msgspec.structs import astuple

from engine.book import (
    AUCTION,
    DONE,
    HELD,
    PENDING,
    RESTING,
    STOP_TYPES,
    Order,
    OrderBook,
)
from engine.commands import (
    CancelOrder,
    Command,
    Halt,
    NewOrder,
    ReplaceOrder,
    Resume,
    SessionClose,
    SessionOpen,
    SetReferencePrice,
    SplitApply,
)
from engine.events import Event, OrderRejected, SessionChanged
from engine.state import BookState, EngineState, EngineStateEpochs, EngineStateSplits

SNAPSHOT_VERSION: Final = 1  # without applied splits: the layout of before splits existed
SNAPSHOT_VERSION_SPLITS: Final = 2  # ``EngineStateSplits``: plus the applied split ids
SNAPSHOT_VERSION_EPOCHS: Final = 3  # ``EngineStateEpochs``: plus each symbol's split epoch
_SNAPSHOT_VERSIONS: Final = (SNAPSHOT_VERSION, SNAPSHOT_VERSION_SPLITS, SNAPSHOT_VERSION_EPOCHS)
_CONTINUOUS_TIFS: Final = frozenset({"day", "gtc", "ioc", "fok"})
# ``Engine._new_order`` and ``_replace`` unpack their command positionally: the fields must stay exactly these.
_REPLACE_ORDER_FIELDS: Final = (
    "order_id", "new_order_id", "qty_e9", "limit_price_e4", "stop_price_e4", "trail_price_e4", "trail_percent_bps",
    "tif", "split_epoch",
)  # fmt: skip
assert ReplaceOrder.__struct_fields__ == _REPLACE_ORDER_FIELDS
_NEW_ORDER_FIELDS: Final = (
    "order_id", "account_id", "symbol", "side", "type", "tif", "qty_e9", "notional_e4", "limit_price_e4",
    "stop_price_e4", "trail_price_e4", "trail_percent_bps", "extended_hours", "order_class", "take_profit",
    "stop_loss", "split_epoch",
)  # fmt: skip
assert NewOrder.__struct_fields__ == _NEW_ORDER_FIELDS


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(EngineStateEpochs)

# mypyc looks a plain imported name up in the module's dict at every use; a ``Final`` alias is a C static
# (``apply`` dispatches on these and the hot paths call them).
_NewOrder: Final = NewOrder
_CancelOrder: Final = CancelOrder
_ReplaceOrder: Final = ReplaceOrder
_OrderRejected: Final = OrderRejected
_astuple: Final = astuple


def validate_order(
    *,
    otype: str,
    tif: str,
    qty: int | None,
    notional: int | None,
    limit: int | None,
    stop: int | None,
    trail_price: int | None,
    trail_bps: int | None,
    extended_hours: bool,
) -> str | None:
    """Reason code when the order parameters are inconsistent, else None."""
    if (qty is None) == (notional is None):
        return "invalid_quantity"
    if qty is not None and qty <= 0:
        return "invalid_quantity"
    if notional is not None and (notional <= 0 or otype != "market" or tif in ("fok", "opg", "cls")):
        return "invalid_quantity"
    needs_limit = otype in ("limit", "stop_limit")
    if needs_limit != (limit is not None) or (limit is not None and limit <= 0):
        return "invalid_price"
    needs_stop = otype in ("stop", "stop_limit")
    if needs_stop != (stop is not None) or (stop is not None and stop <= 0):
        return "invalid_price"
    if otype == "trailing_stop":
        if (trail_price is None) == (trail_bps is None):
            return "invalid_price"
        if trail_price is not None and trail_price <= 0:
            return "invalid_price"
        if trail_bps is not None and not 0 < trail_bps < 10_000:
            return "invalid_price"
    elif trail_price is not None or trail_bps is not None:
        return "invalid_price"
    if otype in STOP_TYPES and tif not in ("day", "gtc"):
        return "invalid_order"
    if tif in ("opg", "cls") and otype not in ("market", "limit"):
        return "invalid_order"
    if extended_hours and (otype != "limit" or tif != "day"):
        return "invalid_order"
    return None


class Engine:
    """One engine per command-topic partition; one ``OrderBook`` per symbol, created on first use."""

    def __init__(self) -> None:
        self.books: dict[str, OrderBook] = {}
        self.orders: dict[str, Order] = {}  # every live order of every book, in acceptance order
        self.last_seq = -1
        self.phase = "closed"  # "closed" (pre-open / after close) | "open"
        self.splits: list[str] = []  # applied split ids, in application order
        self.split_ids: set[str] = set()
        self.split_epochs: dict[str, int] = {}  # symbol -> epoch of its last split (absent = 0)

    # ------------------------------------------------------------------ apply
    def apply(self, seq: int, command: Command) -> list[Event]:
        if seq <= self.last_seq:
            return []
        self.last_seq = seq
        t = type(command)
        # Order commands first, by exact type (commands are final Structs); the rest are rare.
        if t is _NewOrder:
            return self._new_order(seq, command)  # type: ignore[arg-type]
        if t is _CancelOrder:
            return self._cancel(seq, command)  # type: ignore[arg-type]
        if t is _ReplaceOrder:
            return self._replace(seq, command)  # type: ignore[arg-type]
        if t is SessionOpen:
            return self._session(seq, opening=True)
        if t is SessionClose:
            return self._session(seq, opening=False)
        if t is Halt or t is Resume:
            assert isinstance(command, Halt | Resume)
            return self._halt(seq, command.symbol, halted=t is Halt)
        if t is SetReferencePrice:
            assert isinstance(command, SetReferencePrice)
            book = self._book(command.symbol)
            book.ref_price = command.price_e4
            return []
        if t is SplitApply:
            assert isinstance(command, SplitApply)
            return self._split(seq, command)
        raise TypeError(f"unknown command {t.__name__}")

    def book(self, symbol: str) -> OrderBook | None:
        return self.books.get(symbol)

    def _book(self, symbol: str) -> OrderBook:
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = OrderBook(symbol, self.orders)
        return book

    @staticmethod
    def _reject(
        out: list[Event], book: OrderBook | None, seq: int, order_id: str, reason: str
    ) -> list[Event]:
        if book is None:
            out.append(_OrderRejected("", 0, seq, order_id, reason))
        else:
            out.append(_OrderRejected(book.symbol, book.next_book_seq(), seq, order_id, reason))
        return out

    def _new_order(self, seq: int, c: NewOrder) -> list[Event]:
        out: list[Event] = []
        # Every field in one C call: mypyc reads a msgspec Struct's attributes one generic lookup at a time.
        # The fields the fast path tests are declared (one type check each when compiled), so its comparisons
        # are native rather than generic; the rest are only tested against None.
        order_id: str
        account_id: str
        symbol: str
        side: str
        otype: str
        tif: str
        qty: int | None
        limit: int | None
        extended: bool
        order_class: str
        (order_id, account_id, symbol, side, otype, tif, qty, notional, limit, stop, trail_price, trail_bps,
         extended, order_class, _tp, _sl, epoch) = _astuple(c)  # fmt: skip
        if not symbol or not order_id:
            return self._reject(out, None, seq, order_id, "invalid_order")
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = OrderBook(symbol, self.orders)
        book.out = out  # book.begin(out, seq), inlined
        book.seq = seq
        book.match_n = 0
        if order_id in self.orders:
            return self._reject(out, book, seq, order_id, "duplicate_order_id")
        if book.halted:
            return self._reject(out, book, seq, order_id, "halted")
        if epoch is not None and epoch != self.split_epochs.get(symbol, 0):
            return self._reject(out, book, seq, order_id, self._epoch_reason(symbol, epoch))
        if (
            order_class == "simple"
            and qty is not None
            and qty > 0
            and tif in _CONTINUOUS_TIFS
            and notional is None
            and stop is None
            and trail_price is None
            and trail_bps is None
            and not extended
            and (
                (otype == "limit" and limit is not None and limit > 0)
                or (otype == "market" and limit is None)
            )
        ):
            # Fast path: a plain limit/market order by quantity that validate_order would accept.
            book.submit_plain(order_id, account_id, side, otype, tif, qty, limit or 0)
            return out
        reason = validate_order(
            otype=otype,
            tif=tif,
            qty=qty,
            notional=notional,
            limit=limit,
            stop=stop,
            trail_price=trail_price,
            trail_bps=trail_bps,
            extended_hours=extended,
        )
        if reason is None and tif == "opg" and self.phase == "open":
            reason = "auction_closed"
        if reason is None and order_class != "simple":
            reason = self._validate_class(c)
            if reason is None and self._leg_id_taken(c):
                reason = "duplicate_order_id"
        if reason is not None:
            return self._reject(out, book, seq, order_id, reason)

        is_buy = side == "buy"
        o = Order(
            order_id,
            account_id,
            symbol,
            is_buy,
            otype,
            tif,
            qty or 0,
            notional or 0,
            (notional or 0) * 1_000_000_000,
            limit or 0,
            stop or 0,
            trail_price or 0,
            trail_bps or 0,
            0,
            qty or 0,
            0,
            book.next_arrival(),
            HELD,
            extended_hours=extended,
        )
        book.accept(o)
        if order_class == "simple":
            book.route(o)
        else:
            self._new_complex(book, o, c)
        book.end()
        return out

    def _epoch_reason(self, symbol: str, epoch: int) -> str:
        """Why an order command priced under split epoch ``epoch`` cannot enter ``symbol``'s book."""
        return "split_epoch_stale" if epoch < self.split_epochs.get(symbol, 0) else "split_epoch_ahead"

    @staticmethod
    def _validate_class(c: NewOrder) -> str | None:
        if c.tif not in ("day", "gtc") or c.qty_e9 is None or c.extended_hours:
            return "invalid_order"
        tp, sl = c.take_profit, c.stop_loss
        if c.order_class == "oto":
            if (tp is None) == (sl is None):
                return "invalid_order"
        elif tp is None or sl is None:
            return "invalid_order"
        if c.order_class == "oco" and (
            c.type != "limit" or tp is None or tp.limit_price_e4 != c.limit_price_e4
        ):
            return "invalid_order"
        if tp is not None and tp.limit_price_e4 <= 0:
            return "invalid_price"
        if sl is not None and (
            sl.stop_price_e4 <= 0 or (sl.limit_price_e4 is not None and sl.limit_price_e4 <= 0)
        ):
            return "invalid_price"
        if tp is not None and sl is not None:
            # The exit legs must bracket: for a long position (buy entry, sell exits) take-profit above stop.
            long_exit = c.side == "buy" if c.order_class != "oco" else c.side == "sell"
            if long_exit and tp.limit_price_e4 <= sl.stop_price_e4:
                return "invalid_price"
            if not long_exit and tp.limit_price_e4 >= sl.stop_price_e4:
                return "invalid_price"
        return None

    def _leg_id_taken(self, c: NewOrder) -> bool:
        """Would a leg of ``c`` (``<id>:tp``, ``<id>:sl``) reuse the id of a live order? Every id names one order
        at a time; a leg that took a live order's id would make the two indistinguishable in every book."""
        orders = self.orders
        if c.take_profit is not None and c.order_class != "oco" and f"{c.order_id}:tp" in orders:
            return True
        return c.stop_loss is not None and f"{c.order_id}:sl" in orders

    def _new_complex(self, book: OrderBook, o: Order, c: NewOrder) -> None:
        """bracket/oto: entry + held exit legs (opposite side); oco: this limit + a live stop-loss sibling."""
        tp, sl = c.take_profit, c.stop_loss
        legs_buy = not o.is_buy if c.order_class != "oco" else o.is_buy
        legs: list[Order] = []
        if tp is not None and c.order_class != "oco":
            legs.append(self._leg(book, o, f"{o.order_id}:tp", legs_buy, "limit", tp.limit_price_e4, 0))
        if sl is not None:
            otype = "stop" if sl.limit_price_e4 is None else "stop_limit"
            legs.append(
                self._leg(
                    book,
                    o,
                    f"{o.order_id}:sl",
                    legs_buy,
                    otype,
                    sl.limit_price_e4 or 0,
                    sl.stop_price_e4,
                )
            )
        if c.order_class == "oco":
            leg = legs[0]
            leg.oco, o.oco = o.order_id, leg.order_id
            book.accept(leg, o.order_id)
            book.route(o)
            if leg.state == HELD:  # the limit did not fill on entry
                book.route(leg)
            return
        if len(legs) == 2:
            legs[0].oco, legs[1].oco = legs[1].order_id, legs[0].order_id
        o.children = tuple(leg.order_id for leg in legs)
        for leg in legs:
            leg.parent = o.order_id
            book.accept(leg, o.order_id)
        book.route(o)

    @staticmethod
    def _leg(
        book: OrderBook,
        parent: Order,
        oid: str,
        is_buy: bool,
        otype: str,
        limit: int,
        stop: int,
    ) -> Order:
        qty = parent.qty
        return Order(
            oid,
            parent.account_id,
            parent.symbol,
            is_buy,
            otype,
            parent.tif,
            qty,
            0,
            0,
            limit,
            stop,
            0,
            0,
            0,
            qty,
            0,
            book.next_arrival(),
            HELD,
        )

    def _cancel(self, seq: int, c: CancelOrder) -> list[Event]:
        o = self.orders.get(c.order_id)
        if o is None:
            return self._reject([], None, seq, c.order_id, "unknown_order")
        book = self.books[o.symbol]
        if o.state == RESTING and not o.oco and not o.children:
            return book.cancel_resting(o, seq)
        out: list[Event] = []
        book.out = out  # book.begin(out, seq), inlined
        book.seq = seq
        book.match_n = 0
        book.cancel(o, "user")
        book.end()
        return out

    def _replace(self, seq: int, c: ReplaceOrder) -> list[Event]:
        out: list[Event] = []
        # Every field in one C call (as ``_new_order``, which says why some are declared).
        old_id: str
        new_id: str
        c_qty: int | None
        c_limit: int | None
        c_tif: str | None
        (old_id, new_id, c_qty, c_limit, c_stop, c_trail_price, c_trail_bps, c_tif, epoch) = _astuple(c)
        old = self.orders.get(old_id)
        if old is None:
            return self._reject(out, None, seq, new_id, "unknown_order")
        book = self.books[old.symbol]
        book.begin(out, seq)
        if new_id in self.orders:
            return self._reject(out, book, seq, new_id, "duplicate_order_id")
        if book.halted:
            return self._reject(out, book, seq, new_id, "halted")
        if epoch is not None and epoch != self.split_epochs.get(old.symbol, 0):
            return self._reject(out, book, seq, new_id, self._epoch_reason(old.symbol, epoch))
        if old.state not in (RESTING, PENDING, AUCTION) or old.notional:
            return self._reject(out, book, seq, new_id, "not_replaceable")
        trail_given = c_trail_price is not None or c_trail_bps is not None
        qty = c_qty if c_qty is not None else old.leaves
        limit = c_limit if c_limit is not None else (old.limit or None)
        stop = c_stop if c_stop is not None else (old.stop or None)
        if old.otype == "trailing_stop":
            stop = None
            trail_price = c_trail_price if trail_given else (old.trail_price or None)
            trail_bps = c_trail_bps if trail_given else (old.trail_bps or None)
        else:
            trail_price, trail_bps = c_trail_price, c_trail_bps
        tif = c_tif or old.tif
        reason: str | None
        if (
            old.otype == "limit"
            and stop is None
            and trail_price is None
            and trail_bps is None
            and not old.extended_hours
            and tif in _CONTINUOUS_TIFS
            and old.tif in _CONTINUOUS_TIFS
            and qty > 0
            and limit is not None
            and limit > 0
        ):
            # A plain continuous limit (what validate_order would say), so ``old`` is RESTING.
            if (tif == "gtc" or tif == "day") and not old.oco and not old.children:
                book.replace_plain(old, new_id, qty, limit, tif)
                return out
            reason = None
        else:
            reason = validate_order(
                otype=old.otype,
                tif=tif,
                qty=qty,
                notional=None,
                limit=limit,
                stop=stop,
                trail_price=trail_price,
                trail_bps=trail_bps,
                extended_hours=old.extended_hours,
            )
            if reason is None and (tif in ("opg", "cls")) != (old.tif in ("opg", "cls")):
                reason = "invalid_order"
        if reason is not None:
            return self._reject(out, book, seq, new_id, reason)
        new = Order(
            new_id,
            old.account_id,
            old.symbol,
            old.is_buy,
            old.otype,
            tif,
            qty,
            0,
            0,
            limit or 0,
            stop or 0,
            trail_price or 0,
            trail_bps or 0,
            0,
            qty,
            0,
            book.next_arrival(),
            HELD,
            extended_hours=old.extended_hours,
        )
        book.replace(old, new)
        book.end()
        return out

    def _session(self, seq: int, opening: bool) -> list[Event]:
        out: list[Event] = []
        self.phase = "open" if opening else "closed"
        for sym in sorted(self.books):
            book = self.books[sym]
            book.begin(out, seq)
            out.append(SessionChanged(sym, book.next_book_seq(), seq, self.phase))
            book.uncross(book.opg if opening else book.cls)
            book.end()
        if not opening:
            for o in [o for o in self.orders.values() if o.tif == "day"]:
                if o.state != DONE:
                    book = self.books[o.symbol]
                    book.begin(out, seq)  # keeps match_n: expiry never matches
                    book.expire(o)
            for sym in sorted(self.books):
                self.books[sym].end()
        return out

    def _split(self, seq: int, c: SplitApply) -> list[Event]:
        if c.split_id in self.split_ids:
            return []  # already applied: the books are on these terms
        if c.numerator <= 0 or c.denominator <= 0 or c.tick_e4 <= 0:
            return []  # unreachable from the topic (decoding refuses it); never divide by zero
        self.splits.append(c.split_id)
        self.split_ids.add(c.split_id)
        if c.split_epoch is not None:
            self.split_epochs[c.symbol] = c.split_epoch
        out: list[Event] = []
        book = self._book(c.symbol)
        book.begin(out, seq)
        book.split(c.split_id, c.numerator, c.denominator, c.tick_e4)
        book.end()
        return out

    def _halt(self, seq: int, symbol: str, halted: bool) -> list[Event]:
        out: list[Event] = []
        book = self._book(symbol)
        book.begin(out, seq)
        book.halted = halted
        out.append(SessionChanged(symbol, book.next_book_seq(), seq, "halted" if halted else "resumed"))
        book.end()
        return out

    # ------------------------------------------------------------------ snapshot / recovery
    def _state(self) -> EngineState:
        books = []
        for sym in sorted(self.books):
            b = self.books[sym]
            books.append(
                BookState(
                    sym,
                    b.book_seq,
                    b.arrival,
                    b.last_price,
                    b.ref_price,
                    b.halted,
                    b.level_orders(True),
                    b.level_orders(False),
                    list(b.trailing),
                    list(b.opg),
                    list(b.cls),
                )
            )
        orders = [o.to_state() for o in self.orders.values()]
        if not self.splits:
            return EngineState(SNAPSHOT_VERSION, self.last_seq, self.phase, orders, books)
        if not self.split_epochs:
            return EngineStateSplits(
                SNAPSHOT_VERSION_SPLITS, self.last_seq, self.phase, orders, books, list(self.splits)
            )
        return EngineStateEpochs(
            SNAPSHOT_VERSION_EPOCHS,
            self.last_seq,
            self.phase,
            orders,
            books,
            list(self.splits),
            sorted(self.split_epochs.items()),
        )

    def snapshot(self) -> bytes:
        """Canonical msgpack bytes of the whole engine (taken between commands)."""
        return _encoder.encode(self._state())

    def state_hash(self) -> str:
        return hashlib.sha256(self.snapshot()).hexdigest()

    @classmethod
    def restore(cls, data: bytes) -> Engine:
        state = _decoder.decode(data)
        if state.version not in _SNAPSHOT_VERSIONS:
            raise ValueError(f"unsupported snapshot version {state.version}")
        eng = cls()
        eng.last_seq = state.last_seq
        eng.phase = state.phase
        eng.splits = list(state.splits)
        eng.split_ids = set(state.splits)
        eng.split_epochs = dict(state.epochs)
        for o in state.orders:
            eng.orders[o.order_id] = Order.from_state(o)
        for bs in state.books:
            b = eng.books[bs.symbol] = OrderBook(bs.symbol, eng.orders)
            b.book_seq, b.arrival, b.last_price, b.ref_price, b.halted = (
                bs.book_seq,
                bs.arrival,
                bs.last_price,
                bs.ref_price,
                bs.halted,
            )
            b.trailing = {oid: eng.orders[oid] for oid in bs.trailing}
            b.opg = {oid: eng.orders[oid] for oid in bs.opg}
            b.cls = {oid: eng.orders[oid] for oid in bs.cls}
            b.rebuild(bs.bids, bs.asks)
        return eng
