"""Split epochs: an order command priced before a split the book has applied is rejected, hand-checked.

The order service stamps every ``NewOrder``/``ReplaceOrder`` with the ``Asset.split_epoch`` its transaction
read; ``SplitApply`` carries the epoch after the split. Prices are in 1e-4 USD with a 0.01 tick.
"""

from __future__ import annotations

import msgspec
import pytest

from engine import CancelOrder, Engine, ReplaceOrder, SplitApply, StopLoss, TakeProfit
from engine.commands import decode_command, encode_command
from engine.events import Event, OrderAccepted, OrderRejected
from engine.state import EngineStateEpochs
from tests.engine.helpers import SHARE, SYM, USD, fills, kinds, limit

TICK = 100


class Feed:
    def __init__(self) -> None:
        self.engine = Engine()
        self.seq = 0

    def __call__(self, cmd: object) -> list[Event]:
        self.seq += 1
        return self.engine.apply(self.seq, cmd)  # type: ignore[arg-type]


def split(epoch: int | None, split_id: str = "ca:1", symbol: str = SYM, num: int = 2) -> SplitApply:
    return SplitApply(symbol, split_id, num, 1, TICK, epoch)


def book_state(feed: Feed) -> tuple[object, ...]:
    book = feed.engine.book(SYM)
    assert book is not None
    return (book.level_orders(True), book.level_orders(False), sorted(feed.engine.orders))


def split_book() -> Feed:
    """One resting sell 3 @ 100.01 (epoch 0), then a 2-for-1 split to epoch 1: sell 6 @ 50.01."""
    feed = Feed()
    feed(limit("s1", "sell", 3 * SHARE, 100_0100, acct="mm", split_epoch=0))
    feed(split(1))
    return feed


@pytest.mark.parametrize(
    ("epoch", "reason"),
    [
        pytest.param(0, "split_epoch_stale", id="priced-before-the-split"),
        pytest.param(2, "split_epoch_ahead", id="priced-after-a-split-the-book-has-not-seen"),
    ],
)
def test_new_order_under_another_epoch_is_rejected_and_changes_no_book(epoch: int, reason: str) -> None:
    feed = split_book()
    before = book_state(feed)
    book = feed.engine.book(SYM)
    assert book is not None
    book_seq = book.book_seq
    # A pre-split buy 3 @ 100.01 would take all 6 post-split shares at 50.01: it must not trade.
    ev = feed(limit("b1", "buy", 3 * SHARE, 100_0100, acct="c", split_epoch=epoch))
    assert ev == [OrderRejected(SYM, book_seq + 1, 3, "b1", reason)]
    assert book_state(feed) == before
    assert "b1" not in feed.engine.orders


def test_new_order_under_the_current_epoch_trades_and_no_epoch_is_not_checked() -> None:
    feed = split_book()
    ev = feed(limit("b1", "buy", 2 * SHARE, 50_0100, acct="c", split_epoch=1))
    assert fills(ev) == [
        ("s1", 50_0100, 2 * SHARE, 4 * SHARE, "maker"),
        ("b1", 50_0100, 2 * SHARE, 0, "taker"),
    ]
    # An older producer sends no epoch: handled as before epochs existed (accepted on its own terms).
    ev = feed(limit("b2", "buy", SHARE, 50_0100, acct="c", split_epoch=None))
    assert fills(ev) == [("s1", 50_0100, SHARE, 3 * SHARE, "maker"), ("b2", 50_0100, SHARE, 0, "taker")]


def test_epochs_are_per_symbol_and_a_split_without_epoch_keeps_the_symbol_epoch() -> None:
    feed = split_book()
    ev = feed(limit("x1", "buy", SHARE, 10 * USD, symbol="OTHER", split_epoch=0))
    assert kinds(ev) == ["OrderAccepted", "BookLevelChanged"]
    feed(split(None, split_id="ca:old", num=3))  # an older producer's split: applied, epoch unchanged
    assert feed.engine.split_epochs == {SYM: 1}
    ev = feed(limit("b1", "buy", SHARE, 10 * USD, acct="c", split_epoch=1))
    assert kinds(ev) == ["OrderAccepted", "BookLevelChanged"]


def test_a_redelivered_split_leaves_the_epoch_as_it_is() -> None:
    feed = split_book()
    assert feed(split(7)) == []  # same split_id: a no-op, whatever it says
    assert feed.engine.split_epochs == {SYM: 1}
    assert feed(split(2, split_id="ca:2")) != []
    assert feed.engine.split_epochs == {SYM: 2}


def test_stale_replace_is_rejected_and_the_old_order_keeps_its_post_split_terms() -> None:
    feed = Feed()
    feed(limit("b1", "buy", 4 * SHARE, 90 * USD, acct="c", split_epoch=0))
    feed(split(1))
    before = book_state(feed)
    ev = feed(ReplaceOrder("b1", "b1r", qty_e9=4 * SHARE, limit_price_e4=95 * USD, split_epoch=0))
    assert [(type(e), e.order_id, e.reason) for e in ev] == [  # type: ignore[attr-defined]
        (OrderRejected, "b1r", "split_epoch_stale")
    ]
    assert book_state(feed) == before
    o = feed.engine.orders["b1"]
    assert (o.leaves, o.limit) == (8 * SHARE, 45 * USD)
    # Replaced under the current epoch it goes through; the old order can still be canceled either way.
    ev = feed(ReplaceOrder("b1", "b1r", qty_e9=8 * SHARE, limit_price_e4=46 * USD, split_epoch=1))
    assert kinds(ev)[:2] == ["OrderReplaced", "OrderAccepted"]
    assert kinds(feed(CancelOrder(order_id="b1r"))) == ["OrderCanceled", "BookLevelChanged"]


def test_stale_bracket_is_rejected_before_any_leg_exists() -> None:
    feed = split_book()
    ev = feed(
        limit(
            "e1",
            "buy",
            SHARE,
            99 * USD,
            acct="c",
            tif="gtc",
            order_class="bracket",
            take_profit=TakeProfit(limit_price_e4=110 * USD),
            stop_loss=StopLoss(stop_price_e4=90 * USD),
            split_epoch=0,
        )
    )
    assert [type(e) for e in ev] == [OrderRejected]
    assert not {"e1", "e1:tp", "e1:sl"} & set(feed.engine.orders)


def test_snapshot_keeps_epochs_and_restore_replays_identically() -> None:
    cmds = [
        limit("s1", "sell", 3 * SHARE, 100_0100, acct="mm", split_epoch=0),
        split(1),
        limit("b0", "buy", 3 * SHARE, 100_0100, acct="c", split_epoch=0),  # stale: rejected
        limit("b1", "buy", SHARE, 50_0100, acct="c", split_epoch=1),
        split(1),  # redelivered
        limit("b2", "buy", SHARE, 50_0100, acct="c", split_epoch=0),  # still stale after a restore
    ]
    straight = Engine()
    events = [straight.apply(i, c) for i, c in enumerate(cmds)]
    mid = Engine()
    for i, c in enumerate(cmds[:2]):
        mid.apply(i, c)
    snap = mid.snapshot()
    assert snap[:2] == b"\x97\x03"  # version 3: the epochs follow the split ids
    state = msgspec.msgpack.decode(snap, type=EngineStateEpochs)
    assert (state.splits, state.epochs) == (["ca:1"], [(SYM, 1)])
    restored = Engine.restore(snap)
    assert restored.split_epochs == {SYM: 1}
    replayed = [restored.apply(i, c) for i, c in enumerate(cmds) if i >= 1]
    assert replayed == [[], *events[2:]]
    assert [type(e) for e in events[5]] == [OrderRejected]
    assert restored.state_hash() == straight.state_hash()
    assert Engine.restore(straight.snapshot()).snapshot() == straight.snapshot()


@pytest.mark.parametrize(
    ("epoch", "version"),
    [
        pytest.param(None, b"\x96\x02", id="split-without-epoch-keeps-version-2"),
        pytest.param(1, b"\x97\x03", id="split-with-epoch-writes-version-3"),
    ],
)
def test_snapshot_version_moves_only_with_an_epoch(epoch: int | None, version: bytes) -> None:
    feed = Feed()
    feed(limit("s1", "sell", SHARE, 100 * USD, split_epoch=0))  # an epoch-0 order alone changes nothing
    assert feed.engine.snapshot()[:2] == b"\x95\x01"
    feed(split(epoch))
    snap = feed.engine.snapshot()
    assert snap[:2] == version
    assert Engine.restore(snap).split_epochs == ({} if epoch is None else {SYM: 1})


def test_old_snapshots_restore_with_no_epochs() -> None:
    v1 = Feed()
    v1(limit("s1", "sell", SHARE, 100 * USD))
    v2 = Feed()
    v2(limit("s1", "sell", SHARE, 100 * USD))
    v2(split(None))
    for feed in (v1, v2):
        restored = Engine.restore(feed.engine.snapshot())
        assert restored.split_epochs == {}
        assert restored.snapshot() == feed.engine.snapshot()
        # No epoch known: epoch-0 orders are current (the Asset counters of before started at 0 too).
        ev = restored.apply(10, limit("b1", "buy", SHARE, 1 * USD, split_epoch=0))
        assert type(ev[0]) is OrderAccepted


def test_wire_form_and_validation() -> None:
    cmd = limit("b1", "buy", SHARE, 100 * USD, split_epoch=3)
    assert decode_command(encode_command(cmd)) == cmd
    assert decode_command(encode_command(split(2))) == split(2)
    old = b'{"command":"SplitApply","symbol":"X","split_id":"s","numerator":2,"denominator":1,"tick_e4":1}'
    assert decode_command(old) == SplitApply("X", "s", 2, 1, 1, None)  # older producers: no epoch
    with pytest.raises(msgspec.ValidationError, match="Expected `int` >= 0"):
        decode_command(encode_command(limit("b1", "buy", SHARE, USD)).replace(b"}", b',"split_epoch":-1}'))
    with pytest.raises(msgspec.ValidationError, match="Expected `int` >= 1"):
        decode_command(old.replace(b"}", b',"split_epoch":0}'))
