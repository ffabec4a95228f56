"""Tax-lot relief by method (FIFO, LIFO, HIFO, SPEC_ID): hand-checked worked examples, the method setting, and
the lot-selection API (own objects only, validated, idempotent, before the first fill only).

The worked example (no fees): buy 10 @ 100.00 on 2024-03-04 (lot A, cost 1000.00), buy 10 @ 130.00 on
2025-01-06 (lot B, 1300.00), buy 10 @ 115.00 on 2025-06-02 (lot C, 1150.00); sell 15 @ 140.00 on 2025-06-16
(proceeds 2100.00, apportioned by cumulative quantity: 140.00 a share). A is long term on the sale date (held
past 2025-03-04); B and C are short term. Bought cost 3450.00 = relieved cost + open cost, for every method.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from apps.accounts.models import AuditRecord, BrokerageAccount
from apps.core import events as core_events
from apps.core.errors import BrokerageError
from apps.core.fields import format_decimal
from apps.core.models import StoredEvent
from apps.settlement import lots, selectors, services
from apps.settlement.models import JournalEntry, LotSelection, RealizedGain, ShareReservation, TaxLot
from apps.settlement.reconciliation import reconciliation_run
from tests.settlement.factories import account_create, order_create
from tests.settlement.helpers import fill

pytestmark = pytest.mark.django_db

D = Decimal
BUYS = [
    ("A", date(2024, 3, 4), "10", "100.00"),
    ("B", date(2025, 1, 6), "10", "130.00"),
    ("C", date(2025, 6, 2), "10", "115.00"),
]
SELL_DAY = date(2025, 6, 16)


def events_decode(stored: StoredEvent) -> dict[str, object]:
    return core_events.decode(bytes(stored.body)).payload


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 15, 0, tzinfo=UTC)


def _book_buys(account: BrokerageAccount, symbol: str = "AAPL") -> dict[str, TaxLot]:
    services.cash_deposit_post(account=account, amount=D("10000"), transfer_id=f"dep-{account.pk}-{symbol}")
    out: dict[str, TaxLot] = {}
    for name, day, qty, price in BUYS:
        entry = services.fill_settle_trade_date(
            fill=fill(
                account.pk,
                order_id=f"b-{name}-{uuid.uuid4()}",
                side="buy",
                qty=qty,
                price=price,
                at=_at(day),
                symbol=symbol,
            )
        )
        out[name] = TaxLot.objects.get(source_entry=entry)
    return out


def _sell(
    account: BrokerageAccount, *, order_id: str, qty: str, price: str = "140.00", day: date = SELL_DAY
) -> JournalEntry:
    return services.fill_settle_trade_date(
        fill=fill(account.pk, order_id=order_id, side="sell", qty=qty, price=price, at=_at(day))
    )


def _closings(entry: JournalEntry, names: dict[int, str]) -> list[tuple[str, str, str, str, str, str, str]]:
    return [
        (
            names[g.lot_id],
            format_decimal(g.qty),
            str(g.proceeds),
            str(g.cost_basis),
            str(g.gain),
            g.term,
            g.relief_method,
        )
        for g in RealizedGain.objects.filter(sell_entry=entry).order_by("id")
    ]


def _open(account: BrokerageAccount, names: dict[int, str]) -> dict[str, tuple[str, str]]:
    return {
        names[lot.pk]: (format_decimal(lot.remaining), str(lot.remaining_cost))
        for lot in TaxLot.objects.filter(account=account, remaining__gt=0)
    }


@pytest.mark.parametrize(
    ("method", "selection", "closings", "open_lots", "realized"),
    [
        pytest.param(
            "FIFO",
            [],
            [
                ("A", "10", "1400.0000", "1000.0000", "400.0000", "long", "FIFO"),
                ("B", "5", "700.0000", "650.0000", "50.0000", "short", "FIFO"),
            ],
            {"B": ("5", "650.0000"), "C": ("10", "1150.0000")},
            "450.0000",
            id="fifo-oldest-first",
        ),
        pytest.param(
            "LIFO",
            [],
            [
                ("C", "10", "1400.0000", "1150.0000", "250.0000", "short", "LIFO"),
                ("B", "5", "700.0000", "650.0000", "50.0000", "short", "LIFO"),
            ],
            {"A": ("10", "1000.0000"), "B": ("5", "650.0000")},
            "300.0000",
            id="lifo-newest-first",
        ),
        pytest.param(
            "HIFO",
            [],
            [
                ("B", "10", "1400.0000", "1300.0000", "100.0000", "short", "HIFO"),
                ("C", "5", "700.0000", "575.0000", "125.0000", "short", "HIFO"),
            ],
            {"A": ("10", "1000.0000"), "C": ("5", "575.0000")},
            "225.0000",
            id="hifo-highest-cost-first",
        ),
        pytest.param(
            "SPEC_ID",
            [("A", "4"), ("C", "6")],
            [
                ("A", "4", "560.0000", "400.0000", "160.0000", "long", "SPEC_ID"),
                ("C", "6", "840.0000", "690.0000", "150.0000", "short", "SPEC_ID"),
                ("A", "5", "700.0000", "500.0000", "200.0000", "long", "FIFO"),
            ],
            {"A": ("1", "100.0000"), "B": ("10", "1300.0000"), "C": ("4", "460.0000")},
            "510.0000",
            id="spec-id-selected-then-fifo-for-the-rest",
        ),
        pytest.param(
            "SPEC_ID",
            [],
            [
                ("A", "10", "1400.0000", "1000.0000", "400.0000", "long", "FIFO"),
                ("B", "5", "700.0000", "650.0000", "50.0000", "short", "FIFO"),
            ],
            {"B": ("5", "650.0000"), "C": ("10", "1150.0000")},
            "450.0000",
            id="spec-id-without-selection-is-fifo",
        ),
        pytest.param(
            "LIFO",
            [("A", "4")],
            [
                ("A", "4", "560.0000", "400.0000", "160.0000", "long", "SPEC_ID"),
                ("C", "10", "1400.0000", "1150.0000", "250.0000", "short", "LIFO"),
                ("B", "1", "140.0000", "130.0000", "10.0000", "short", "LIFO"),
            ],
            {"A": ("6", "600.0000"), "B": ("9", "1170.0000")},
            "420.0000",
            id="selection-then-lifo-for-the-rest",
        ),
    ],
)
def test_worked_example_relief_by_method(
    method: str,
    selection: list[tuple[str, str]],
    closings: list[tuple[str, ...]],
    open_lots: dict[str, tuple[str, str]],
    realized: str,
) -> None:
    account = account_create()
    services.cost_basis_method_set(account=account, method=method)
    by_name = _book_buys(account)
    names = {lot.pk: name for name, lot in by_name.items()}
    order_id = str(uuid.uuid4())
    services.shares_reserve(account=account, order_id=order_id, symbol="AAPL", qty=D("15"))
    if selection:
        services.lot_selection_set(
            account=account,
            order_id=order_id,
            choices=[services.LotChoice(lot_id=by_name[n].pk, qty=D(q)) for n, q in selection],
        )
    entry = _sell(account, order_id=order_id, qty="15")
    assert entry.details["fees"] == {}
    assert _closings(entry, names) == closings
    assert _open(account, names) == open_lots
    assert selectors.realized_pnl(account) == D(realized)
    relieved = sum((g.cost_basis for g in RealizedGain.objects.filter(sell_entry=entry)), D(0))
    open_cost = sum((D(c) for _, c in open_lots.values()), D(0))
    assert relieved + open_cost == D("3450.0000")
    assert LotSelection.objects.filter(remaining__gt=0).count() == 0
    assert reconciliation_run(job="positions_vs_lots", halt=False).breaks == []


def test_selection_is_consumed_across_partial_fills_in_the_chosen_order() -> None:
    account = account_create()
    by_name = _book_buys(account)
    names = {lot.pk: name for name, lot in by_name.items()}
    order_id = str(uuid.uuid4())
    services.shares_reserve(account=account, order_id=order_id, symbol="AAPL", qty=D("12"))
    services.lot_selection_set(
        account=account,
        order_id=order_id,
        choices=[
            services.LotChoice(lot_id=by_name["C"].pk, qty=D("5")),
            services.LotChoice(lot_id=by_name["B"].pk, qty=D("3")),
        ],
    )
    first = _sell(account, order_id=order_id, qty="4")
    second = _sell(account, order_id=order_id, qty="8")
    assert _closings(first, names) == [("C", "4", "560.0000", "460.0000", "100.0000", "short", "SPEC_ID")]
    assert _closings(second, names) == [
        ("C", "1", "140.0000", "115.0000", "25.0000", "short", "SPEC_ID"),
        ("B", "3", "420.0000", "390.0000", "30.0000", "short", "SPEC_ID"),
        ("A", "4", "560.0000", "400.0000", "160.0000", "long", "FIFO"),
    ]
    assert sorted(LotSelection.objects.values_list("remaining", flat=True)) == [D(0), D(0)]
    assert ShareReservation.objects.get(order_id=order_id).remaining == 0


def test_method_change_applies_to_later_sells_only_and_is_audited_and_evented() -> None:
    account = account_create()
    by_name = _book_buys(account)
    names = {lot.pk: name for name, lot in by_name.items()}
    first = _sell(account, order_id="s1", qty="2")
    assert _closings(first, names) == [("A", "2", "280.0000", "200.0000", "80.0000", "long", "FIFO")]
    services.cost_basis_method_set(account=account, method="LIFO")
    services.cost_basis_method_set(account=account, method="LIFO")  # unchanged: no second record
    second = _sell(account, order_id="s2", qty="2", day=date(2025, 6, 17))
    assert _closings(first, names) == [("A", "2", "280.0000", "200.0000", "80.0000", "long", "FIFO")]
    assert _closings(second, names) == [("C", "2", "280.0000", "230.0000", "50.0000", "short", "LIFO")]
    events = list(
        StoredEvent.objects.filter(
            event_type="settlement.CostBasisMethodChanged", aggregate_id=str(account.pk)
        )
    )
    assert [(events_decode(e)["method"], events_decode(e)["previous_method"]) for e in events] == [
        ("LIFO", "FIFO")
    ]
    audits = AuditRecord.objects.filter(action="settlement.cost_basis_method_changed")
    assert list(audits.values_list("before__method", "after__method")) == [("FIFO", "LIFO")]


@pytest.mark.parametrize(
    ("acquired", "sold", "term"),
    [
        pytest.param(
            date(2024, 1, 15), date(2025, 1, 15), "short", id="exactly-one-year-across-leap-day-is-short"
        ),
        pytest.param(date(2024, 1, 15), date(2025, 1, 16), "long", id="day-after-anniversary-is-long"),
        pytest.param(date(2024, 2, 29), date(2025, 2, 28), "short", id="leap-day-lot-on-feb-28"),
        pytest.param(date(2024, 2, 29), date(2025, 3, 1), "long", id="leap-day-lot-on-mar-1"),
        pytest.param(date(2025, 6, 2), date(2025, 6, 16), "short", id="two-weeks"),
    ],
)
def test_holding_term(acquired: date, sold: date, term: str) -> None:
    assert lots.holding_term(acquired, sold) == term


def test_leap_year_lot_sold_on_its_anniversary_is_short_term_in_the_ledger() -> None:
    account = account_create()
    services.cash_deposit_post(account=account, amount=D("1000"), transfer_id="dep-leap")
    services.fill_settle_trade_date(
        fill=fill(account.pk, order_id="b", side="buy", qty="1", price="10", at=_at(date(2024, 1, 16)))
    )
    entry = _sell(account, order_id="s", qty="1", price="12", day=date(2025, 1, 16))
    assert [(g.gain, g.term) for g in RealizedGain.objects.filter(sell_entry=entry)] == [
        (D("2.0000"), "short")
    ]


# --------------------------------------------------------------------------------------------------------------
# API


def _client(account: BrokerageAccount) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=account.owner)
    return client


@pytest.fixture
def seller() -> tuple[BrokerageAccount, dict[str, TaxLot], str]:
    account = account_create()
    by_name = _book_buys(account)
    order_id = str(order_create(account, side="sell", qty="15", limit_price="140").id)
    services.shares_reserve(account=account, order_id=order_id, symbol="AAPL", qty=D("15"))
    return account, by_name, order_id


def test_cost_basis_method_get_and_patch() -> None:
    account = account_create()
    client = _client(account)
    assert client.get("/v1/account/cost-basis").json() == {"method": "FIFO"}
    resp = client.patch(
        "/v1/account/cost-basis", {"method": "HIFO"}, format="json", HTTP_IDEMPOTENCY_KEY="k1"
    )
    assert (resp.status_code, resp.json()) == (200, {"method": "HIFO"})
    again = client.patch(
        "/v1/account/cost-basis", {"method": "HIFO"}, format="json", HTTP_IDEMPOTENCY_KEY="k1"
    )
    assert (again.status_code, again.json()) == (200, {"method": "HIFO"})
    assert client.get("/v1/account/cost-basis").json() == {"method": "HIFO"}
    bad = client.patch("/v1/account/cost-basis", {"method": "average"}, format="json")
    assert bad.status_code == 422
    assert selectors.cost_basis_method(account) == "HIFO"
    assert StoredEvent.objects.filter(event_type="settlement.CostBasisMethodChanged").count() == 1


def test_open_lots_listing_shows_own_lots_with_pending_selection(
    seller: tuple[BrokerageAccount, dict[str, TaxLot], str],
) -> None:
    account, by_name, order_id = seller
    services.lot_selection_set(
        account=account, order_id=order_id, choices=[services.LotChoice(lot_id=by_name["B"].pk, qty=D("2.5"))]
    )
    body = _client(account).get("/v1/positions/aapl/lots").json()
    assert body == [
        {
            "lot_id": str(by_name["A"].pk),
            "symbol": "AAPL",
            "acquired_date": "2024-03-04",
            "qty": "10",
            "original_qty": "10",
            "cost_basis": "1000",
            "cost_per_share": "100",
            "selected_qty": "0",
        },
        {
            "lot_id": str(by_name["B"].pk),
            "symbol": "AAPL",
            "acquired_date": "2025-01-06",
            "qty": "10",
            "original_qty": "10",
            "cost_basis": "1300",
            "cost_per_share": "130",
            "selected_qty": "2.5",
        },
        {
            "lot_id": str(by_name["C"].pk),
            "symbol": "AAPL",
            "acquired_date": "2025-06-02",
            "qty": "10",
            "original_qty": "10",
            "cost_basis": "1150",
            "cost_per_share": "115",
            "selected_qty": "0",
        },
    ]
    assert _client(account_create()).get("/v1/positions/AAPL/lots").status_code == 404


def test_lot_selection_post_then_get_and_idempotent_replay(
    seller: tuple[BrokerageAccount, dict[str, TaxLot], str],
) -> None:
    account, by_name, order_id = seller
    client = _client(account)
    body = {"lots": [{"lot_id": str(by_name["C"].pk), "qty": "6"}, {"lot_id": by_name["A"].pk, "qty": 4}]}
    url = f"/v1/orders/{order_id}/lot-selection"
    first = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="sel-1")
    expected = {
        "order_id": order_id,
        "symbol": "AAPL",
        "lots": [
            {"lot_id": str(by_name["C"].pk), "qty": "6", "remaining": "6"},
            {"lot_id": str(by_name["A"].pk), "qty": "4", "remaining": "4"},
        ],
    }
    assert (first.status_code, first.json()) == (200, expected)
    replay = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="sel-1")
    assert (replay.status_code, replay.json()) == (200, expected)
    assert client.get(url).json() == expected
    assert (
        StoredEvent.objects.filter(
            event_type="settlement.LotSelectionRecorded", aggregate_id=order_id
        ).count()
        == 1
    )
    cleared = client.post(url, {"lots": []}, format="json", HTTP_IDEMPOTENCY_KEY="sel-2")
    assert (cleared.status_code, cleared.json()["lots"]) == (200, [])
    assert LotSelection.objects.count() == 0


def test_lot_selection_of_another_customers_order_or_lot_is_404(
    seller: tuple[BrokerageAccount, dict[str, TaxLot], str],
) -> None:
    account, by_name, order_id = seller
    stranger = account_create()
    stranger_lots = _book_buys(stranger)
    body = {"lots": [{"lot_id": str(by_name["A"].pk), "qty": "1"}]}
    assert (
        _client(stranger).post(f"/v1/orders/{order_id}/lot-selection", body, format="json").status_code == 404
    )
    assert _client(stranger).get(f"/v1/orders/{order_id}/lot-selection").status_code == 404
    foreign = {"lots": [{"lot_id": str(stranger_lots["A"].pk), "qty": "1"}]}
    assert (
        _client(account).post(f"/v1/orders/{order_id}/lot-selection", foreign, format="json").status_code
        == 404
    )
    unknown = {"lots": [{"lot_id": "999999999", "qty": "1"}]}
    assert (
        _client(account).post(f"/v1/orders/{order_id}/lot-selection", unknown, format="json").status_code
        == 404
    )
    assert (
        _client(account).post("/v1/orders/not-a-uuid/lot-selection", body, format="json").status_code == 404
    )
    assert (
        _client(account).post(f"/v1/orders/{uuid.uuid4()}/lot-selection", body, format="json").status_code
        == 404
    )
    assert LotSelection.objects.count() == 0
    assert StoredEvent.objects.filter(event_type="settlement.LotSelectionRecorded").count() == 0


@pytest.mark.parametrize(
    ("lots_of", "error"),
    [
        pytest.param(
            lambda L: [{"lot_id": str(L["A"].pk), "qty": "10.000000001"}],
            "lot_qty_exceeded",
            id="more-than-the-lot",
        ),
        pytest.param(
            lambda L: [{"lot_id": str(L["A"].pk), "qty": "10"}, {"lot_id": str(L["B"].pk), "qty": "5.5"}],
            "lot_selection_exceeds_order",
            id="more-than-the-order",
        ),
        pytest.param(
            lambda L: [{"lot_id": str(L["X"].pk), "qty": "1"}], "lot_symbol_mismatch", id="other-symbol"
        ),
        pytest.param(
            lambda L: [{"lot_id": str(L["A"].pk), "qty": "1"}, {"lot_id": str(L["A"].pk), "qty": "1"}],
            "duplicate_lot",
            id="same-lot-twice",
        ),
        pytest.param(lambda L: [{"lot_id": str(L["A"].pk), "qty": "0.0000000001"}], None, id="ten-decimals"),
        pytest.param(lambda L: [{"lot_id": str(L["A"].pk), "qty": "1e0"}], None, id="exponent"),
        pytest.param(lambda L: [{"lot_id": str(L["A"].pk), "qty": "0"}], None, id="zero"),
        pytest.param(lambda L: [{"lot_id": str(L["A"].pk), "qty": "-1"}], None, id="negative"),
        pytest.param(lambda L: [{"lot_id": "1.0", "qty": "1"}], None, id="lot-id-not-an-integer"),
    ],
)
def test_lot_selection_is_validated(
    seller: tuple[BrokerageAccount, dict[str, TaxLot], str], lots_of: object, error: str | None
) -> None:
    account, by_name, order_id = seller
    other = _book_buys(account, symbol="MSFT")
    table = {**by_name, "X": other["A"]}
    assert callable(lots_of)
    resp = _client(account).post(
        f"/v1/orders/{order_id}/lot-selection", {"lots": lots_of(table)}, format="json"
    )
    assert resp.status_code == 422
    if error is not None:
        assert resp.json()["error"] == error
    assert LotSelection.objects.count() == 0


def test_lots_chosen_by_another_open_order_are_not_available_twice(
    seller: tuple[BrokerageAccount, dict[str, TaxLot], str],
) -> None:
    account, by_name, order_id = seller
    other_order = str(uuid.uuid4())
    services.shares_reserve(account=account, order_id=other_order, symbol="AAPL", qty=D("15"))
    a = by_name["A"].pk
    services.lot_selection_set(
        account=account, order_id=other_order, choices=[services.LotChoice(lot_id=a, qty=D("7"))]
    )
    client = _client(account)
    over = client.post(
        f"/v1/orders/{order_id}/lot-selection", {"lots": [{"lot_id": str(a), "qty": "3.5"}]}, format="json"
    )
    assert (over.status_code, over.json()["error"], over.json()["details"]["available"]) == (
        422,
        "lot_qty_exceeded",
        "3.000000000",
    )
    ok = client.post(
        f"/v1/orders/{order_id}/lot-selection", {"lots": [{"lot_id": str(a), "qty": "3"}]}, format="json"
    )
    assert ok.status_code == 200
    services.shares_release(order_id=other_order)  # canceled: its choice no longer holds the lot
    freed = client.post(
        f"/v1/orders/{order_id}/lot-selection", {"lots": [{"lot_id": str(a), "qty": "10"}]}, format="json"
    )
    assert freed.status_code == 200


def test_lot_selection_after_a_fill_booked_or_after_cancel_is_refused(
    seller: tuple[BrokerageAccount, dict[str, TaxLot], str],
) -> None:
    account, by_name, order_id = seller
    _sell(account, order_id=order_id, qty="1")
    body = {"lots": [{"lot_id": str(by_name["B"].pk), "qty": "2"}]}
    resp = _client(account).post(f"/v1/orders/{order_id}/lot-selection", body, format="json")
    assert (resp.status_code, resp.json()["error"]) == (409, "order_partially_filled")
    services.shares_release(order_id=order_id)
    resp = _client(account).post(f"/v1/orders/{order_id}/lot-selection", body, format="json")
    assert (resp.status_code, resp.json()["error"]) == (409, "order_not_open")
    assert LotSelection.objects.count() == 0


def test_lot_selection_is_for_sell_orders_only(
    seller: tuple[BrokerageAccount, dict[str, TaxLot], str],
) -> None:
    account, by_name, _ = seller
    buy = order_create(account, side="buy", qty="1", limit_price="100")
    url = f"/v1/orders/{buy.id}/lot-selection"
    assert _client(account).get(url).json() == {"order_id": str(buy.id), "symbol": "AAPL", "lots": []}
    resp = _client(account).post(url, {"lots": [{"lot_id": str(by_name["A"].pk), "qty": "1"}]}, format="json")
    assert (resp.status_code, resp.json()["error"]) == (422, "not_a_sell_order")
    assert LotSelection.objects.count() == 0


# --------------------------------------------------------------------------------------------------------------
# Concurrency: the lot row lock makes "qty <= open qty less other orders' choices" race-free, and the
# reservation lock orders a selection against the order's own first fill.


def _threads(*jobs: Any) -> list[str]:
    barrier = threading.Barrier(len(jobs))
    outcomes: list[str] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def run(job: Any) -> None:
        try:
            barrier.wait()
            try:
                result = job()
            except BrokerageError as exc:
                result = exc.error
            with guard:
                outcomes.append(result)
        except BaseException as exc:  # surfaced below: a thread must not fail silently
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return sorted(outcomes)


@pytest.mark.django_db(transaction=True)
def test_concurrent_selections_of_one_lot_never_exceed_its_open_qty() -> None:
    account = account_create()
    by_name = _book_buys(account)
    orders = [f"race-{i}" for i in range(6)]
    for order_id in orders:
        services.shares_reserve(account=account, order_id=order_id, symbol="AAPL", qty=D("5"))
    lot_a = by_name["A"].pk

    def choose(order_id: str) -> Any:
        def job() -> str:
            choice = services.LotChoice(lot_id=lot_a, qty=D("4"))
            services.lot_selection_set(account=account, order_id=order_id, choices=[choice])
            return "ok"

        return job

    assert _threads(*(choose(o) for o in orders)) == ["lot_qty_exceeded"] * 4 + ["ok"] * 2
    assert LotSelection.objects.filter(lot_id=lot_a).count() == 2


@pytest.mark.django_db(transaction=True)
def test_selection_racing_the_first_fill_either_applies_or_is_refused() -> None:
    account = account_create()
    by_name = _book_buys(account)
    names = {lot.pk: name for name, lot in by_name.items()}
    services.shares_reserve(account=account, order_id="race-fill", symbol="AAPL", qty=D("10"))

    def choose() -> str:
        services.lot_selection_set(
            account=account,
            order_id="race-fill",
            choices=[services.LotChoice(lot_id=by_name["C"].pk, qty=D("5"))],
        )
        return "selected"

    def book() -> str:
        _sell(account, order_id="race-fill", qty="5")
        return "filled"

    outcomes = _threads(choose, book)
    entry = JournalEntry.objects.get(source_type="fill", details__order_id="race-fill")
    closed = [(c[0], c[1], c[6]) for c in _closings(entry, names)]
    if outcomes == ["filled", "selected"]:
        assert closed == [("C", "5", "SPEC_ID")]  # the selection committed first and the fill followed it
    else:
        assert outcomes == ["filled", "order_partially_filled"]
        assert closed == [("A", "5", "FIFO")]
        assert LotSelection.objects.count() == 0


def test_transfer_out_spares_lots_chosen_for_an_open_sell() -> None:
    account = account_create()
    by_name = _book_buys(account)
    names = {lot.pk: name for name, lot in by_name.items()}
    services.settlement_run(as_of=date(2025, 6, 10))  # only settled shares transfer out
    services.shares_reserve(account=account, order_id="keep-a", symbol="AAPL", qty=D("6"))
    choice = services.LotChoice(lot_id=by_name["A"].pk, qty=D("6"))
    services.lot_selection_set(account=account, order_id="keep-a", choices=[choice])
    services.shares_withdrawal_post(account=account, symbol="AAPL", qty=D("8"), transfer_id="acats-out")
    # FIFO over what is not chosen: A's 4 free shares, then 4 of B; A's 6 chosen shares stay for the sale.
    assert _open(account, names) == {
        "A": ("6", "600.0000"),
        "B": ("6", "780.0000"),
        "C": ("10", "1150.0000"),
    }
    sale = _sell(account, order_id="keep-a", qty="6")
    assert [(c[0], c[1], c[6]) for c in _closings(sale, names)] == [("A", "6", "SPEC_ID")]


@pytest.mark.parametrize(
    ("num", "den", "qty", "remaining"),
    [
        pytest.param(3, 2, "6", "6", id="3-for-2"),
        pytest.param(1, 3, "1.333333333", "1.333333333", id="1-for-3-rounds-down"),
    ],
)
def test_open_lot_choices_follow_a_split(num: int, den: int, qty: str, remaining: str) -> None:
    account = account_create()
    by_name = _book_buys(account)
    services.shares_reserve(account=account, order_id="split-me", symbol="AAPL", qty=D("5"))
    choice = services.LotChoice(lot_id=by_name["A"].pk, qty=D("4"))
    services.lot_selection_set(account=account, order_id="split-me", choices=[choice])
    assert services.lot_selections_split(symbol="AAPL", ratio=Fraction(num, den)) == 1
    sel = LotSelection.objects.get()
    assert (format_decimal(sel.qty), format_decimal(sel.remaining)) == (qty, remaining)
    assert services.lot_selections_split(symbol="MSFT", ratio=Fraction(2)) == 0


def test_monthly_statement_lists_each_closed_lot_with_acquired_date_term_and_method(
    seller: tuple[BrokerageAccount, dict[str, TaxLot], str],
) -> None:
    account, by_name, order_id = seller
    choices = [
        services.LotChoice(lot_id=by_name["A"].pk, qty=D("4")),
        services.LotChoice(lot_id=by_name["C"].pk, qty=D("6")),
    ]
    services.lot_selection_set(account=account, order_id=order_id, choices=choices)
    _sell(account, order_id=order_id, qty="15")
    text = " ".join(_client(account).get("/v1/accounts/statements?month=2025-06").content.decode().split())
    row = (
        '<tr><td>2025-06-16</td><td>{}</td><td>AAPL</td><td class="num">{}</td><td class="num">{}</td>'
        '<td class="num">{}</td><td class="num">{}</td><td>{}</td><td>{}</td></tr>'
    )
    for expected in (
        row.format("2024-03-04", "4", "560.00", "400.00", "160.00", "long", "SPEC_ID"),
        row.format("2025-06-02", "6", "840.00", "690.00", "150.00", "short", "SPEC_ID"),
        row.format("2024-03-04", "5", "700.00", "500.00", "200.00", "long", "FIFO"),
        '<th>Realized gain/loss this month</th><td class="num">510.00</td>',
    ):
        assert expected in text, expected
