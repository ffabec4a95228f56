"""``bulk.trade_date_book`` books exactly what ``services.fill_settle_trade_date`` (a fill) and
``services.hold_release`` + ``shares_release`` (an order release) book op by op, fills and releases interleaved.

Each case runs the same fill sequence twice on the same starting books: one fill at a time (then rolled back),
and in one bulk call; every ledger entry, posting, balance, obligation, lot, realized gain, hold, reservation,
good-faith violation and restriction must come out identical (entries compared by position, not id).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from django.db.models import F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.accounts.models import BrokerageAccount
from apps.core.errors import NotFound
from apps.settlement import bulk, lots, services
from apps.settlement.corporate_actions import corporate_action_apply
from apps.settlement.models import (
    CashAccountRestriction,
    CashHold,
    CorporateAction,
    FeeRule,
    GoodFaithViolation,
    JournalEntry,
    LedgerAccount,
    LotSelection,
    Posting,
    RealizedGain,
    SettlementObligation,
    ShareReservation,
    TaxLot,
)
from apps.settlement.types import FillData
from tests.settlement.factories import account_create

pytestmark = pytest.mark.django_db

TUE = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def _fill(
    n: int, account: BrokerageAccount, order: str, side: str, qty: str, price: str, at: datetime = TUE
) -> FillData:
    return FillData(
        fill_id=f"f-{n}",
        order_id=order,
        account_id=str(account.pk),
        symbol="AAPL",
        side=side,  # type: ignore[arg-type]
        qty=Decimal(qty),
        price=Decimal(price),
        filled_at=at.replace(minute=n),
        liquidity="taker",
    )


def books() -> dict[str, Any]:
    """Every row the fill path writes, with entries referred to by position (ids differ between runs)."""
    entries = list(JournalEntry.objects.order_by("id"))
    pos = {e.pk: n for n, e in enumerate(entries)}
    rows = {la.pk: (la.account_id, la.kind, la.asset) for la in LedgerAccount.objects.all()}
    lot_pos = {pk: n for n, pk in enumerate(TaxLot.objects.order_by("id").values_list("id", flat=True))}
    postings: dict[int, list[Any]] = {}
    for p in Posting.objects.order_by("id"):
        postings.setdefault(p.entry_id, []).append((rows[p.ledger_account_id], p.asset, p.amount))
    return {
        "entries": [
            (
                e.source_type,
                e.source_id,
                e.entry_type,
                e.account_id,
                e.effective_date,
                None if e.source_type == "hold_release" else e.occurred_at,  # stamped with the wall clock
                e.description,
                e.details,
                # Within an entry, postings follow ledger-row pk order, and rows created on the way get pks in
                # creation order (one by one vs all at once): the same postings, compared as a sorted list.
                sorted(postings.get(e.pk, []), key=str),
            )
            for e in entries
        ],
        "balances": sorted(
            (str(la.account_id), la.kind, la.asset, la.balance) for la in LedgerAccount.objects.all()
        ),
        "obligations": [
            (o.account_id, pos[o.trade_entry_id], o.kind, o.asset, o.amount, o.trade_date, o.settle_date)
            for o in SettlementObligation.objects.order_by("id")
        ],
        "lots": [
            (
                t.account_id,
                t.symbol,
                pos[t.source_entry_id],
                t.acquired_date,
                t.qty,
                t.remaining,
                t.remaining_cost,
            )
            for t in TaxLot.objects.order_by("id")
        ],
        "gains": [
            (
                pos[g.lot.source_entry_id],
                pos[g.sell_entry_id],
                g.qty,
                g.proceeds,
                g.cost_basis,
                g.gain,
                g.term,
                g.closed_date,
                g.relief_method,
            )
            for g in RealizedGain.objects.select_related("lot").order_by("id")
        ],
        "selections": [
            (s.reservation.order_id, lot_pos[s.lot_id], s.seq, s.qty, s.remaining)
            for s in LotSelection.objects.select_related("reservation").order_by("id")
        ],
        "holds": list(
            CashHold.objects.order_by("order_id").values_list("order_id", "remaining", "unsettled_remaining")
        ),
        "reservations": list(
            ShareReservation.objects.order_by("order_id").values_list("order_id", "remaining")
        ),
        "violations": [
            (v.account_id, pos[v.buy_entry_id], pos[v.sell_entry_id], v.funds_settle_date, v.unsettled_funded)
            for v in GoodFaithViolation.objects.order_by("id")
        ],
        "restrictions": list(
            CashAccountRestriction.objects.values_list("account_id", "start_date", "end_date")
        ),
    }


def one_by_one(fills: list[FillData]) -> dict[str, Any]:
    with transaction.atomic():
        for f in fills:
            services.fill_settle_trade_date(fill=f)
        state = books()
        transaction.set_rollback(True)
    return state


def in_bulk(fills: list[FillData]) -> tuple[dict[str, Any], list[JournalEntry]]:
    with transaction.atomic():
        entries = bulk.fills_settle_trade_date(fills=fills)
    return books(), entries


def in_bulk_house_deferred(fills: list[FillData]) -> tuple[dict[str, Any], list[JournalEntry]]:
    """As the projection books a chunk: the firm's rows moved by ``HouseMoves.apply`` as the last write."""
    with transaction.atomic():
        house = bulk.HouseMoves()
        booked = bulk.trade_date_book(ops=fills, house=house)
        house.apply()
    return books(), [booked[f.fill_id] for f in fills]


@pytest.fixture
def fees() -> None:
    FeeRule.objects.create(code="commission", effective_from=date(2026, 1, 1), per_share=Decimal("0.005"))
    FeeRule.objects.create(
        code="taf",
        effective_from=date(2026, 1, 1),
        side="sell",
        rate=Decimal("0.0001"),
        min_fee=Decimal("0.01"),
    )


def _cash(amount: str) -> BrokerageAccount:
    account = account_create()
    with transaction.atomic():
        services.cash_deposit_post(account=account, amount=Decimal(amount), transfer_id=f"t-{account.pk}")
    return account


def _shares(account: BrokerageAccount, qty: str) -> None:
    with transaction.atomic():
        services.shares_deposit_post(
            account=account,
            symbol="AAPL",
            qty=Decimal(qty),
            cost_basis=Decimal(qty) * 50,
            transfer_id=f"s-{account.pk}",
        )


def scenario_holds() -> list[FillData]:
    """Two buyers: partial then full fills against holds, price improvement left in the hold."""
    a, b = _cash("5000"), _cash("3000")
    with transaction.atomic():
        services.hold_place(account=a, order_id="oa", amount=Decimal("1001"))
        services.hold_place(account=b, order_id="ob", amount=Decimal("2002"))
    return [
        _fill(1, a, "oa", "buy", "4", "99.5"),
        _fill(2, b, "ob", "buy", "10", "100"),
        _fill(3, a, "oa", "buy", "6", "100"),
        _fill(4, b, "ob", "buy", "10", "99"),
    ]


def scenario_unsettled_and_good_faith() -> list[FillData]:
    """A sale's proceeds fund a buy beyond its hold (unsettled-funded, dated by the sale in the same batch),
    and selling those shares again the same day is a good-faith violation; no hold at all for the last buy."""
    s = _cash("100")
    _shares(s, "100")
    with transaction.atomic():
        services.shares_reserve(account=s, order_id="s1", symbol="AAPL", qty=Decimal("100"))
        services.hold_place(account=s, order_id="s2", amount=Decimal("50"))
    return [
        _fill(1, s, "s1", "sell", "60", "101"),
        _fill(2, s, "s2", "buy", "50", "100"),
        _fill(3, s, "s1", "sell", "40", "102"),
        _fill(4, s, "s3", "sell", "50", "103"),
        _fill(5, s, "nohold", "buy", "1", "100"),
    ]


def scenario_replays() -> list[FillData]:
    """A fill already booked before the batch, and the same fill twice in the batch, book once."""
    a = _cash("5000")
    with transaction.atomic():
        services.hold_place(account=a, order_id="oa", amount=Decimal("2000"))
    first = _fill(1, a, "oa", "buy", "5", "100")
    with transaction.atomic():
        services.fill_settle_trade_date(fill=first)
    second = _fill(2, a, "oa", "buy", "5", "100")
    return [first, second, second, _fill(3, a, "oa", "buy", "2", "100")]


@pytest.mark.parametrize(
    "scenario",
    [
        pytest.param(scenario_holds, id="holds-partial-and-full"),
        pytest.param(scenario_unsettled_and_good_faith, id="unsettled-funded-good-faith"),
        pytest.param(scenario_replays, id="replayed-fills"),
    ],
)
@pytest.mark.parametrize(
    "booker",
    [
        pytest.param(in_bulk, id="firm-rows-locked"),
        pytest.param(in_bulk_house_deferred, id="firm-rows-deferred"),
    ],
)
@pytest.mark.usefixtures("fees")
def test_bulk_books_exactly_what_fill_by_fill_books(scenario: Any, booker: Any) -> None:
    fills = scenario()
    expected = one_by_one(fills)
    got, entries = booker(fills)
    assert got == expected
    assert [e.source_id for e in entries] == [f.fill_id for f in fills]
    assert len({f.fill_id for f in fills}) == len({e.pk for e in entries})


@pytest.mark.usefixtures("fees")
def test_scenarios_exercise_fees_unsettled_funding_and_violations() -> None:
    """The cases above cover what they claim (so the equality is not vacuous)."""
    fills = scenario_unsettled_and_good_faith()
    bulk.fills_settle_trade_date(fills=fills)
    buy = JournalEntry.objects.get(source_type="fill", source_id="f-2")
    assert (buy.details["unsettled_funded"], buy.details["funds_settle_date"]) == (
        "4900.250000000",
        "2026-11-25",
    )
    # The bought lot is the oldest (the deposit is dated today): both later sales close part of it.
    assert list(
        GoodFaithViolation.objects.values_list("sell_entry__source_id", flat=True).order_by("id")
    ) == ["f-3", "f-4"]
    assert JournalEntry.objects.filter(source_type="fill_fee").count() == 5


@pytest.mark.usefixtures("fees")
def test_a_replayed_batch_changes_nothing() -> None:
    fills = scenario_holds()
    first = bulk.fills_settle_trade_date(fills=fills)
    before = books()
    again = bulk.fills_settle_trade_date(fills=fills)
    assert books() == before
    assert [e.pk for e in again] == [e.pk for e in first]


def release_one_by_one(order_ids: list[str]) -> dict[str, Any]:
    with transaction.atomic():
        for order_id in order_ids:
            for release in (services.hold_release, services.shares_release):
                with contextlib.suppress(NotFound):
                    release(order_id=order_id)
        state = books()
        transaction.set_rollback(True)
    return state


@pytest.mark.usefixtures("fees")
def test_bulk_release_books_exactly_what_order_by_order_books() -> None:
    """Holds partly used, unused, funded by pending proceeds (part returns to unsettled), already released,
    twice in the list; reservations partly used; an order with neither."""
    fills = scenario_unsettled_and_good_faith()
    seller = BrokerageAccount.objects.get(pk=fills[0].account_id)
    a, b = _cash("2000"), account_create()
    _shares(b, "10")
    with transaction.atomic():
        services.hold_place(account=a, order_id="unused", amount=Decimal("300"))
        services.hold_place(account=a, order_id="done", amount=Decimal("100"))
        services.hold_release(order_id="done")
        services.shares_reserve(account=b, order_id="s9", symbol="AAPL", qty=Decimal("5"))
    bulk.fills_settle_trade_date(
        fills=[*fills, _fill(9, a, "unused", "buy", "1", "100"), _fill(10, b, "s9", "sell", "2", "100")]
    )
    with transaction.atomic():
        # Funded by the sale's pending proceeds: a part of the release goes back to unsettled.
        services.hold_place(account=seller, order_id="s4", amount=Decimal("3000"))
    assert CashHold.objects.get(order_id="s4").unsettled_remaining > 0
    order_ids = ["s2", "unused", "done", "s1", "s9", "s4", "unused", "none"]
    expected = release_one_by_one(order_ids)
    with transaction.atomic():
        bulk.orders_release(order_ids=order_ids)
    assert books() == expected
    returned = Posting.objects.filter(
        entry__source_type="hold_release",
        ledger_account__kind=LedgerAccount.Kind.CASH_UNSETTLED,
        amount__gt=0,
    )
    assert returned.count() == 1  # the case is not vacuous: part of s4's release went back to unsettled


def ops_one_by_one(ops: list[FillData | bulk.OrderRelease]) -> dict[str, Any]:
    with transaction.atomic():
        for op in ops:
            if isinstance(op, bulk.OrderRelease):
                for release in (services.hold_release, services.shares_release):
                    with contextlib.suppress(NotFound):
                        release(order_id=op.order_id)
            else:
                services.fill_settle_trade_date(fill=op)
        state = books()
        transaction.set_rollback(True)
    return state


@pytest.mark.usefixtures("fees")
def test_fills_and_releases_interleaved_book_as_op_by_op() -> None:
    """A release returns cash a later fill of the account draws on (beyond its hold); a sale books pending
    proceeds that a later release of an unsettled-funded hold counts; releases of used, unused and no holds."""
    fills = scenario_unsettled_and_good_faith()
    seller = BrokerageAccount.objects.get(pk=fills[0].account_id)
    bulk.fills_settle_trade_date(fills=fills[:1])  # the first sale: proceeds pending
    a = _cash("1000")
    with transaction.atomic():
        services.hold_place(account=seller, order_id="s4", amount=Decimal("5000"))  # partly from proceeds
        services.hold_place(account=a, order_id="x1", amount=Decimal("100"))
        services.hold_place(account=a, order_id="x2", amount=Decimal("500"))
    release = bulk.OrderRelease
    ops: list[FillData | bulk.OrderRelease] = [
        fills[1],
        release("x2"),
        _fill(7, a, "x1", "buy", "8", "100"),  # 800.04 > its hold: draws the settled cash x2 gave back
        fills[2],
        release("s4"),
        release("x1"),
        fills[3],
        release("s1"),
        release("none"),
        fills[4],
        release("s2"),
    ]
    expected = ops_one_by_one(ops)
    with transaction.atomic():
        bulk.trade_date_book(ops=ops)
    assert books() == expected
    returned = Posting.objects.filter(
        entry__source_type="hold_release",
        ledger_account__kind=LedgerAccount.Kind.CASH_UNSETTLED,
        amount__gt=0,
    )
    assert list(returned.values_list("entry__source_id", flat=True)) == ["s4:1"]


# --------------------------------------------------------------------------------------------------------------
# Lot relief: every method, several sells of one account in one call, partial lots, selections, a split


PAST_BUYS = [  # (trade date, qty, price): four lots of distinct dates and unit costs, bought without fees
    (date(2025, 3, 3), "10", "100"),
    (date(2025, 9, 2), "10", "130"),
    (date(2026, 2, 2), "10", "90"),
    (date(2026, 6, 1), "7", "115.37"),
]


def _past_buy(account: BrokerageAccount, tag: str, day: date, qty: str, price: str) -> None:
    with transaction.atomic():
        services.fill_settle_trade_date(
            fill=FillData(
                fill_id=f"past-{tag}",
                order_id=f"past-{tag}",
                account_id=str(account.pk),
                symbol="AAPL",
                side="buy",
                qty=Decimal(qty),
                price=Decimal(price),
                filled_at=datetime(day.year, day.month, day.day, 15, tzinfo=UTC),
                liquidity="taker",
            )
        )


def _lot_holder(
    method: str, buys: list[tuple[date, str, str]] = PAST_BUYS
) -> tuple[BrokerageAccount, list[int]]:
    """An account with settled cash and the lots of ``buys`` (ids in buy order), relieving by ``method``."""
    account = _cash("100000")
    for i, (day, qty, price) in enumerate(buys):
        _past_buy(account, f"{account.pk}-{i}", day, qty, price)
    if method != lots.FIFO:
        services.cost_basis_method_set(account=account, method=method)
    return account, list(TaxLot.objects.filter(account=account).order_by("id").values_list("id", flat=True))


def _select(account: BrokerageAccount, order_id: str, qty: str, choices: list[tuple[int, str]]) -> None:
    with transaction.atomic():
        services.shares_reserve(account=account, order_id=order_id, symbol="AAPL", qty=Decimal(qty))
        services.lot_selection_set(
            account=account,
            order_id=order_id,
            choices=[services.LotChoice(lot_id=lot, qty=Decimal(q)) for lot, q in choices],
        )


def scenario_lot_methods(method: str) -> list[FillData]:
    """Five sells of one account (``method``) and two of a FIFO account in one call: a part of one lot, sells
    across lots, a lot opened by a buy in the call that later sells reach (LIFO, HIFO), an order whose selected
    lots go first (one selected lot already closed by then under FIFO) and whose second fill finds the
    selections used up."""
    a, ids = _lot_holder(method)
    b, _ = _lot_holder(lots.FIFO)
    _select(a, "sel", "8", [(ids[2], "3"), (ids[0], "2")])
    with transaction.atomic():
        services.hold_place(account=a, order_id="buy", amount=Decimal("700"))
    return [
        _fill(1, a, "s1", "sell", "4", "140"),
        _fill(2, b, "t1", "sell", "3", "140"),
        _fill(3, a, "s2", "sell", "12", "141.5"),
        _fill(4, a, "buy", "buy", "5", "120"),
        _fill(5, a, "sel", "sell", "6", "142"),
        _fill(6, a, "sel", "sell", "2", "142"),
        _fill(7, a, "s3", "sell", "10", "139.99"),
        _fill(8, b, "t1", "sell", "2.5", "140"),
    ]


METHOD_PARAMS = [pytest.param(m, id=m.lower()) for m in lots.METHODS]


@pytest.mark.parametrize("method", METHOD_PARAMS)
@pytest.mark.usefixtures("fees")
def test_bulk_relieves_lots_exactly_as_fill_by_fill(method: str) -> None:
    fills = scenario_lot_methods(method)
    expected = one_by_one(fills)
    got, _ = in_bulk(fills)
    assert got == expected


@pytest.mark.parametrize("method", METHOD_PARAMS)
@pytest.mark.usefixtures("fees")
def test_lot_scenario_is_not_vacuous(method: str) -> None:
    """Each method's case relieves by that method and by selection, leaves a lot partly open, and (LIFO, HIFO)
    relieves the lot its own buy opened."""
    bulk.fills_settle_trade_date(fills=scenario_lot_methods(method))
    gains = RealizedGain.objects.filter(
        sell_entry__source_id__in=["f-1", "f-3", "f-5", "f-6", "f-7"]
    )  # account a
    rest = lots.FIFO if method == lots.SPEC_ID else method
    assert set(gains.values_list("relief_method", flat=True)) == {rest, lots.SPEC_ID}
    assert TaxLot.objects.filter(remaining__gt=0, remaining__lt=F("qty")).exists()
    own_lot_relieved = gains.filter(lot__source_entry__source_id="f-4").exists()
    assert own_lot_relieved is (method in (lots.LIFO, lots.HIFO))
    assert LotSelection.objects.filter(remaining__lt=F("qty")).exists()


def scenario_after_split() -> list[FillData]:
    """Lots scaled by a 3-for-2 split with cash in lieu (uneven quantities, costs no longer a whole unit cost;
    a selection scaled with them), then HIFO and FIFO sells that relieve parts of them."""
    a, ids = _lot_holder(lots.HIFO)
    b, _ = _lot_holder(lots.FIFO, PAST_BUYS[:2])
    _select(a, "sel", "6", [(ids[3], "5")])
    services.settlement_run(as_of=date(2026, 11, 23))
    action = CorporateAction.objects.create(
        kind="split",
        symbol="AAPL",
        effective_date=date(2026, 11, 23),
        ratio_num=3,
        ratio_den=2,
        cash_in_lieu_price=Decimal("80"),
    )
    corporate_action_apply(action_id=action.pk)
    return [
        _fill(1, a, "sel", "sell", "9", "81"),
        _fill(2, a, "s2", "sell", "16.25", "80.5"),
        _fill(3, b, "t1", "sell", "7", "79"),
        _fill(4, b, "t2", "sell", "11.5", "79.99"),
    ]


@pytest.mark.usefixtures("fees")
def test_bulk_relieves_split_lots_exactly_as_fill_by_fill() -> None:
    fills = scenario_after_split()
    scaled = list(TaxLot.objects.order_by("id").values_list("qty", "remaining", "remaining_cost"))
    assert (Decimal("10.5"), Decimal("10"), Decimal("769.1714")) in scaled  # 7 x 3/2, 0.5 cashed out
    assert LotSelection.objects.get().remaining == Decimal("7.5")
    expected = one_by_one(fills)
    got, _ = in_bulk(fills)
    assert got == expected


qty_halves = st.integers(min_value=1, max_value=40).map(lambda n: Decimal(n) / 2)
price_cents = st.integers(min_value=100, max_value=50_000).map(lambda c: Decimal(c) / 100)
past_lots = st.lists(
    st.tuples(st.integers(min_value=0, max_value=650), qty_halves, price_cents), min_size=0, max_size=5
)
chunk_fills = st.lists(
    st.tuples(st.sampled_from(["buy", "sell"]), st.integers(0, 1), qty_halves, price_cents),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    methods=st.tuples(st.sampled_from(lots.METHODS), st.sampled_from(lots.METHODS)),
    held=st.tuples(past_lots, past_lots),
    ops=chunk_fills,
    select=st.lists(st.tuples(st.integers(0, 4), qty_halves), max_size=2),
)
@pytest.mark.usefixtures("fees")
def test_property_bulk_lot_relief_equals_sequential_relief(
    methods: tuple[str, str],
    held: tuple[list[tuple[int, Decimal, Decimal]], list[tuple[int, Decimal, Decimal]]],
    ops: list[tuple[str, int, Decimal, Decimal]],
    select: list[tuple[int, Decimal]],
) -> None:
    """Random lots, methods and buys/sells of two accounts in one call (and lots selected for the first
    account's order "sel"): one ``trade_date_book`` call writes what ``fill_settle_trade_date`` fill by fill
    writes, whether the firm's rows are locked up front or deferred to its last write (as the projection books)."""
    with transaction.atomic():
        accounts: list[BrokerageAccount] = []
        for who, (method, buys) in enumerate(zip(methods, held, strict=True)):
            dated = [(date(2025, 1, 2) + timedelta(days=d), str(q), str(p)) for d, q, p in buys]
            account, ids = _lot_holder(method, dated)
            accounts.append(account)
            chosen: dict[int, Decimal] = {}
            for n, q in select if who == 0 and ids else []:
                chosen.setdefault(ids[n % len(ids)], min(q, buys[n % len(ids)][1]))  # at most the lot
            if chosen:
                total = sum(chosen.values(), Decimal(0))
                _select(account, "sel", str(total), [(lot, str(q)) for lot, q in chosen.items()])
        fills = [
            _fill(
                n,
                accounts[who],
                ("sel" if who == 0 else "s1") if side == "sell" else f"b{n}",
                side,
                str(q),
                str(p),
            )
            for n, (side, who, q, p) in enumerate(ops, start=1)
        ]
        expected = one_by_one(fills)
        for booker in (in_bulk, in_bulk_house_deferred):  # the firm's rows locked up front, then last
            before = transaction.savepoint()
            got, _ = booker(fills)
            assert got == expected, booker.__name__
            transaction.savepoint_rollback(before)
        transaction.set_rollback(True)
