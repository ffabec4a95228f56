"""Property tests: the engine against a naive list-based reference book, plus snapshot/replay recovery."""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction
from math import ceil, floor

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from engine import CancelOrder, Engine, NewOrder, ReplaceOrder, SplitApply
from engine.commands import Command
from engine.events import (
    Event,
    OrderAdjusted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    TradeExecuted,
)
from tests.engine.helpers import SHARE, SYM, limit, market


@dataclass
class RefOrder:
    oid: str
    acct: str
    buy: bool
    price: int
    qty: int
    leaves: int
    t: int


class ReferenceBook:
    """Deliberately naive: one list per side, re-sorted on every match. Simple orders only."""

    def __init__(self) -> None:
        self.resting: list[RefOrder] = []
        self.t = 0
        self.trades: list[tuple[int, int, str, str]] = []  # (price, qty, buy_id, sell_id)

    def submit(self, oid: str, acct: str, buy: bool, otype: str, tif: str, qty: int, price: int) -> None:
        self.t += 1
        o = RefOrder(oid, acct, buy, price, qty, qty, self.t)

        def crosses(r: RefOrder) -> bool:
            if r.buy == buy:
                return False
            if otype == "market":
                return True
            return r.price <= price if buy else r.price >= price

        def key(r: RefOrder) -> tuple[int, int]:
            return (r.price if buy else -r.price, r.t)

        if tif == "fok":
            avail = sum(r.leaves for r in self.resting if crosses(r) and r.acct != acct)
            if avail < qty:
                return
        while o.leaves:
            cands = sorted((r for r in self.resting if crosses(r)), key=key)
            if not cands:
                break
            r = cands[0]
            if r.acct == acct:
                self.resting.remove(r)  # self-trade prevention: cancel the resting order
                continue
            q = min(o.leaves, r.leaves)
            o.leaves -= q
            r.leaves -= q
            self.trades.append((r.price, q, oid if buy else r.oid, r.oid if buy else oid))
            if not r.leaves:
                self.resting.remove(r)
        if o.leaves and otype == "limit" and tif in ("day", "gtc"):
            self.resting.append(o)

    def cancel(self, oid: str) -> None:
        self.resting = [r for r in self.resting if r.oid != oid]

    def split(self, num: int, den: int) -> None:
        """Tick 1: leaves x num/den rounded down (sells and whole-share buys to whole shares; 0 = canceled),
        buy prices rounded down and sell prices up, never below 1; priority stays (price, arrival)."""
        kept = []
        for r in self.resting:
            exact = Fraction(r.leaves * num, den)
            leaves = floor(exact / SHARE) * SHARE if not r.buy or r.leaves % SHARE == 0 else floor(exact)
            if leaves:
                price = Fraction(r.price * den, num)
                r.price = max(floor(price) if r.buy else ceil(price), 1)
                r.leaves = leaves
                kept.append(r)
        self.resting = kept


ACCOUNTS = ["a", "b", "c"]


class EngineVsReference(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine()
        self.ref = ReferenceBook()
        self.seq = 0
        self.n = 0
        self.qty: dict[str, int] = {}  # order id -> original qty
        self.filled: dict[str, int] = {}
        self.canceled: dict[str, int] = {}
        self.log: list[tuple[int, Command]] = []
        self.events: list[Event] = []
        self.splits = 0

    def _apply(self, cmd: Command) -> list[tuple[int, int, str, str]]:
        self.seq += 1
        self.log.append((self.seq, cmd))
        ev = self.engine.apply(self.seq, cmd)
        self.events.extend(ev)
        for e in ev:
            if isinstance(e, OrderFilled):
                self.filled[e.order_id] = self.filled.get(e.order_id, 0) + e.qty_e9
            elif isinstance(e, OrderCanceled):
                self.canceled[e.order_id] = self.canceled.get(e.order_id, 0) + e.canceled_qty_e9
            elif isinstance(e, OrderAdjusted):  # post-split units from here on
                self.qty[e.order_id] = e.qty_e9
                self.filled[e.order_id] = e.cum_qty_e9
            elif isinstance(e, OrderReplaced):
                self.canceled[e.order_id] = self.canceled.get(e.order_id, 0) + (
                    self.qty[e.order_id] - e.cum_qty_e9
                )
        got = [
            (e.price_e4, e.qty_e9, e.buy_order_id, e.sell_order_id)
            for e in ev
            if isinstance(e, TradeExecuted)
        ]
        return got

    def _new_id(self) -> str:
        self.n += 1
        return f"o{self.n}"

    @rule(
        buy=st.booleans(),
        acct=st.sampled_from(ACCOUNTS),
        qty=st.integers(1, 20),
        price=st.integers(95, 105),
        tif=st.sampled_from(["day", "gtc", "ioc", "fok"]),
    )
    def new_limit(self, buy: bool, acct: str, qty: int, price: int, tif: str) -> None:
        oid = self._new_id()
        self.qty[oid] = qty
        before = len(self.ref.trades)
        self.ref.submit(oid, acct, buy, "limit", tif, qty, price)
        got = self._apply(
            limit(oid, "buy" if buy else "sell", qty, price, acct=acct, tif=tif, split_epoch=self.splits)
        )
        assert got == self.ref.trades[before:]

    @rule(buy=st.booleans(), acct=st.sampled_from(ACCOUNTS), qty=st.integers(1, 40))
    def new_market(self, buy: bool, acct: str, qty: int) -> None:
        oid = self._new_id()
        self.qty[oid] = qty
        before = len(self.ref.trades)
        self.ref.submit(oid, acct, buy, "market", "day", qty, 0)
        got = self._apply(market(oid, "buy" if buy else "sell", qty, acct=acct))
        assert got == self.ref.trades[before:]

    @precondition(lambda self: bool(self.ref.resting))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        r = data.draw(st.sampled_from(self.ref.resting))
        self.ref.cancel(r.oid)
        self._apply(CancelOrder(order_id=r.oid))

    @precondition(lambda self: bool(self.ref.resting))
    @rule(data=st.data(), qty=st.integers(1, 20), price=st.integers(95, 105))
    def replace(self, data: st.DataObject, qty: int, price: int) -> None:
        r = data.draw(st.sampled_from(self.ref.resting))
        self.ref.cancel(r.oid)
        oid = self._new_id()
        self.qty[oid] = qty
        before = len(self.ref.trades)
        self.ref.submit(oid, r.acct, r.buy, "limit", "gtc", qty, price)
        got = self._apply(
            ReplaceOrder(
                order_id=r.oid, new_order_id=oid, qty_e9=qty, limit_price_e4=price, split_epoch=self.splits
            )
        )
        assert got == self.ref.trades[before:]

    @precondition(lambda self: self.splits < 3)
    @rule(terms=st.sampled_from([(2, 1), (1, 2), (3, 2), (2, 3)]), again=st.booleans())
    def split(self, terms: tuple[int, int], again: bool) -> None:
        num, den = terms
        if again and self.splits:  # a redelivered split id changes nothing
            assert self._apply(SplitApply(SYM, f"s{self.splits}", num, den, 1, self.splits)) == []
            return
        self.splits += 1
        self.ref.split(num, den)
        assert self._apply(SplitApply(SYM, f"s{self.splits}", num, den, 1, self.splits)) == []  # no trades

    @rule(
        data=st.data(),
        buy=st.booleans(),
        qty=st.integers(1, 20),
        price=st.integers(95, 105),
        ahead=st.integers(1, 2),
    )
    def wrong_epoch(self, data: st.DataObject, buy: bool, qty: int, price: int, ahead: int) -> None:
        """An order (or replace) priced under another split epoch is rejected and changes no book."""
        stale = self.splits > 0 and data.draw(st.booleans(), label="stale")
        epoch = data.draw(st.integers(0, self.splits - 1), label="epoch") if stale else self.splits + ahead
        reason = "split_epoch_stale" if stale else "split_epoch_ahead"
        oid = self._new_id()
        if bool(self.ref.resting) and data.draw(st.booleans(), label="replace"):
            r = data.draw(st.sampled_from(self.ref.resting), label="old")
            cmd: Command = ReplaceOrder(
                order_id=r.oid, new_order_id=oid, qty_e9=qty, limit_price_e4=price, split_epoch=epoch
            )
        else:
            cmd = limit(oid, "buy" if buy else "sell", qty, price, split_epoch=epoch)
        before = len(self.events)
        self._apply(cmd)
        assert [(type(e), e.order_id, e.reason) for e in self.events[before:]] == [  # type: ignore[attr-defined]
            (OrderRejected, oid, reason)
        ]

    @invariant()
    def not_crossed_and_same_book(self) -> None:
        book = self.engine.book(SYM)
        if book is None:
            return
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is None or ask is None or bid < ask
        for is_buy in (True, False):
            expect = sorted(
                (r for r in self.ref.resting if r.buy == is_buy),
                key=lambda r: (-r.price if is_buy else r.price, r.t),
            )
            got = [oid for _, ids in book.level_orders(is_buy) for oid in ids]
            assert got == [r.oid for r in expect]  # price-time priority, identical resting set
            for r in expect:
                assert self.engine.orders[r.oid].leaves == r.leaves

    @invariant()
    def quantity_conserved(self) -> None:
        for oid, qty in self.qty.items():
            o = self.engine.orders.get(oid)
            resting = o.leaves if o is not None else 0
            assert qty == self.filled.get(oid, 0) + resting + self.canceled.get(oid, 0), oid

    def teardown(self) -> None:
        # Recovery: restore a mid-stream snapshot, replay the rest (and some already-applied commands).
        if len(self.log) < 2:
            return
        cut = len(self.log) // 2
        eng = Engine()
        for seq, cmd in self.log[:cut]:
            eng.apply(seq, cmd)
        restored = Engine.restore(eng.snapshot())
        replayed: list[Event] = []
        for seq, cmd in self.log[max(0, cut - 3) :]:
            replayed.extend(restored.apply(seq, cmd))
        assert restored.state_hash() == self.engine.state_hash()
        tail_seqs = {seq for seq, _ in self.log[cut:]}
        assert replayed == [e for e in self.events if e.seq in tail_seqs]


TestEngineVsReference = EngineVsReference.TestCase
TestEngineVsReference.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _random_stream(rng: random.Random, n: int) -> list[Command]:
    """A mixed stream touching every feature: stops, trailing stops, brackets, OCO, auctions, sessions."""
    from engine import SessionClose, SessionOpen, SetReferencePrice, StopLoss, TakeProfit

    cmds: list[Command] = [SetReferencePrice(symbol=SYM, price_e4=100), SessionOpen()]
    live: list[str] = []
    for i in range(n):
        oid = f"r{i}"
        side = rng.choice(["buy", "sell"])
        acct = rng.choice(ACCOUNTS)
        qty = rng.randint(1, 10)
        roll = rng.random()
        if roll < 0.4:
            cmds.append(
                limit(oid, side, qty, rng.randint(95, 105), acct=acct, tif=rng.choice(["day", "gtc", "ioc"]))
            )
            live.append(oid)
        elif roll < 0.5:
            cmds.append(market(oid, side, qty, acct=acct))
        elif roll < 0.6:
            cmds.append(
                NewOrder(order_id=oid, account_id=acct, symbol=SYM, side=side, type="stop", tif="gtc",  # type: ignore[arg-type]
                         qty_e9=qty, stop_price_e4=rng.randint(95, 105))
            )  # fmt: skip
            live.append(oid)
        elif roll < 0.65:
            cmds.append(
                NewOrder(order_id=oid, account_id=acct, symbol=SYM, side=side, type="trailing_stop",  # type: ignore[arg-type]
                         tif="gtc", qty_e9=qty, trail_percent_bps=rng.randint(50, 400))
            )  # fmt: skip
            live.append(oid)
        elif roll < 0.72:
            px = rng.randint(98, 102)
            cmds.append(
                NewOrder(order_id=oid, account_id=acct, symbol=SYM, side="buy", type="limit", tif="gtc",
                         qty_e9=qty, limit_price_e4=px, order_class="bracket",
                         take_profit=TakeProfit(limit_price_e4=px + 3),
                         stop_loss=StopLoss(stop_price_e4=px - 3, limit_price_e4=px - 4))
            )  # fmt: skip
            live.append(oid)
        elif roll < 0.77:
            cmds.append(
                limit(oid, side, qty, rng.randint(97, 103), acct=acct, tif=rng.choice(["opg", "cls"]))
            )
        elif roll < 0.9 and live:
            cmds.append(CancelOrder(order_id=rng.choice(live)))
        elif live:
            cmds.append(ReplaceOrder(order_id=rng.choice(live), new_order_id=oid, qty_e9=qty))
            live.append(oid)
        if rng.random() < 0.02:
            cmds.append(rng.choice([SessionOpen(), SessionClose()]))
        if rng.random() < 0.01:  # splits, sometimes re-sent: state and snapshots must carry them
            num, den = rng.choice([(2, 1), (1, 2), (3, 2)])
            cmds.append(SplitApply(SYM, f"split-{rng.randint(0, 3)}", num, den, 1))
    return cmds


def test_kill_mid_stream_restore_and_replay_gives_same_state_and_no_new_fill_ids() -> None:
    rng = random.Random(7)
    cmds = _random_stream(rng, 3000)
    straight = Engine()
    all_events: list[Event] = []
    snapshots: dict[int, bytes] = {}
    for seq, cmd in enumerate(cmds, start=1):
        all_events.extend(straight.apply(seq, cmd))
        if seq % 500 == 0:
            snapshots[seq] = straight.snapshot()
    fill_ids = [e.fill_id for e in all_events if isinstance(e, OrderFilled)]
    assert len(fill_ids) == len(set(fill_ids)) > 100
    kinds = {type(e).__name__ for e in all_events}
    assert {"OrderTriggered", "OrderActivated", "OrderReplaced", "OrderExpired"} <= kinds

    # "Crash" after seq 1700: the process restarts from the snapshot at 1500 and the consumer re-reads from
    # an earlier offset (1400), so some commands are delivered twice.
    recovered = Engine.restore(snapshots[1500])
    replayed: list[Event] = []
    for seq, cmd in enumerate(cmds, start=1):
        if seq >= 1400:
            replayed.extend(recovered.apply(seq, cmd))
    assert recovered.state_hash() == straight.state_hash()
    assert replayed == [e for e in all_events if e.seq > 1500]
    old_ids = {e.fill_id for e in all_events if isinstance(e, OrderFilled) and e.seq <= 1500}
    assert not old_ids & {e.fill_id for e in replayed if isinstance(e, OrderFilled)}


def test_same_input_same_hash() -> None:
    cmds = _random_stream(random.Random(11), 800)
    hashes = set()
    for _ in range(2):
        eng = Engine()
        for seq, cmd in enumerate(cmds, start=1):
            eng.apply(seq, cmd)
        hashes.add(eng.state_hash())
    assert len(hashes) == 1


def test_book_seq_is_gap_free_per_symbol() -> None:
    eng = Engine()
    last = 0
    for seq, cmd in enumerate(_random_stream(random.Random(3), 500), start=1):
        for e in eng.apply(seq, cmd):
            if e.book_seq:
                assert e.book_seq == last + 1
                last = e.book_seq
