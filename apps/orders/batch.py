"""Batch order submission (our extension ``POST /v2/orders/batch``): up to ``MAX_BATCH`` orders, one outcome each.

Invariants:
- Each item is judged by the rules of ``services.order_submit`` (same validation, risk rules and errors), in
  request order, against the state left by the items before it: buying power and sellable shares are running
  totals, and an accepted item counts as a resting order for the self-trade checks of later items.
- A rejected item writes nothing; accepted items are written together in ONE transaction (the caller's, opened
  durably by ``idempotent_execute``): orders and legs, holds/reservations (``apps.settlement.bulk``) and the
  engine commands (``apps.core.outbox.events_record_bulk``) with bulk inserts. An error during the writes rolls
  the whole batch back (nothing is half-written).
- Locks: first the batch's distinct assets ``FOR KEY SHARE`` in primary-key order
  (``services.assets_key_share``, the same lock ``order_submit`` takes: a split of one of them waits for the
  batch to commit and then adjusts its orders, or the batch waits for the split and reads post-split terms and
  epoch); then the account's ledger rows (cash and the sold symbols' shares), ONCE, in primary-key order, before
  any balance is read. Concurrent single orders of the account wait on the same rows, so buying power is never
  double-spent.
- Per-item idempotency: ``client_order_id`` is the item's key. An item whose ``client_order_id`` already names an
  order of the account (stored, or accepted earlier in the same batch) with the same terms gets that order back
  (status 200, nothing written); with different terms it gets 422 ``duplicate_client_order_id``.
- Rate limit: the account's fixed-window counter is read once and consumed once (INCRBY the accepted count);
  items past the limit get ``order_rate_limit``. Two concurrent batches of one account may overshoot the window
  by at most one batch (known gap, documented).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from datetime import datetime
from decimal import Decimal

import msgspec
from django.db import IntegrityError, transaction

from apps.accounts.models import BrokerageAccount
from apps.core.copy import copy_insert
from apps.core.errors import BrokerageError, ValidationError
from apps.core.markettime_config import market_clock
from apps.core.money import WIDE
from apps.core.outbox import EventSpec, events_record_bulk
from apps.orders import risk, services
from apps.orders.models import Asset, Order
from apps.orders.selectors import RestingOrder, open_orders_crossable
from apps.orders.types import OrderRequest, StopLossSpec, TakeProfitSpec
from apps.settlement.bulk import AccountReservations, reservations_open
from engine import commands as ec

MAX_BATCH = 1000
STATUS_CREATED = 201
STATUS_REPLAYED = 200


@dataclass(slots=True)
class BatchOutcome:
    """One item's result: an order (201 new, 200 replayed by ``client_order_id``) or the error it got."""

    status: int
    order: Order | None = None
    legs: list[Order] = field(default_factory=list)
    error: BrokerageError | None = None


def _terms(order: Order, legs: Sequence[Order]) -> OrderRequest:
    """The request terms a stored order was submitted with (for the per-item idempotency comparison)."""
    tp = next((leg for leg in legs if leg.leg_role == Order.LegRole.TAKE_PROFIT), None)
    sl = next((leg for leg in legs if leg.leg_role == Order.LegRole.STOP_LOSS), None)
    take_profit = None
    if order.order_class == Order.OrderClass.OCO and order.limit_price is not None:
        take_profit = TakeProfitSpec(limit_price=order.limit_price)
    elif tp is not None and tp.limit_price is not None:
        take_profit = TakeProfitSpec(limit_price=tp.limit_price)
    stop_loss = None
    if sl is not None and sl.stop_price is not None:
        stop_loss = StopLossSpec(stop_price=sl.stop_price, limit_price=sl.limit_price)
    return OrderRequest(
        symbol=order.symbol,
        side=order.side,
        type=order.type,
        time_in_force=order.time_in_force,
        qty=order.qty,
        notional=order.notional,
        limit_price=order.limit_price,
        stop_price=order.stop_price,
        trail_price=order.trail_price,
        trail_percent=order.trail_percent,
        extended_hours=order.extended_hours,
        client_order_id=order.client_order_id,
        order_class=order.order_class,
        take_profit=take_profit,
        stop_loss=stop_loss,
    )


def _same_terms(a: OrderRequest, b: OrderRequest) -> bool:
    # Decimal equality ignores the written scale ("10" == "10.0"), as the single-order API does.
    return a == b


def _duplicate() -> ValidationError:
    return ValidationError(
        "client_order_id was already used for an order with different terms",
        field="client_order_id",
        error="duplicate_client_order_id",
    )


def _crossing_check(
    resting: dict[tuple[str, str], list[RestingOrder]], data: OrderRequest, cfg: risk.RiskConfig
) -> None:
    """``services._crossing_prevention`` against an in-memory list (stored open orders + accepted items)."""
    if data.order_class == "oco":
        return
    opposite = "sell" if data.side == "buy" else "buy"
    services.crossing_rules_check(resting.get((data.symbol, opposite), []), data, cfg)


def _reserve(
    res: AccountReservations,
    order: Order,
    data: OrderRequest,
    worst: Decimal | None,
    ref: Decimal | None,
    cfg: risk.RiskConfig,
) -> None:
    """``services._reserve`` decided against the batch's running balances (written later by ``flush``)."""
    if data.side == "buy":
        if data.notional is not None:
            amount = risk.money_ceil(data.notional)
        else:
            assert worst is not None
            assert data.qty is not None
            amount = risk.money_ceil(risk.mul(worst, data.qty))
        res.hold(order_id=str(order.id), amount=amount)
        order.reserved_amount = amount
        return
    if data.qty is not None:
        qty = data.qty
    else:
        assert data.notional is not None
        low = risk.mul(ref, 1 - cfg.price_collar) if ref is not None else None
        if low is None or low <= 0:
            raise risk.violation(
                "reference_price_required",
                "A notional sell needs a reference price.",
                inputs={"symbol": data.symbol},
                threshold=None,
                config=cfg,
            )
        qty = WIDE.divide(data.notional, low).quantize(
            Decimal("0.000000001"), rounding="ROUND_CEILING", context=WIDE
        )
    res.reserve(order_id=str(order.id), symbol=order.symbol, qty=qty)
    order.reserved_qty = qty


def _rate_window(account_id: str, cfg: risk.RiskConfig) -> tuple[str, int]:
    window = int(market_clock().now().timestamp()) // cfg.rate_limit_window_s
    key = f"orders:rate:{account_id}:{window}"
    used = int(risk._redis().get(key) or 0)
    return key, used


def _rate_consume(key: str, count: int, cfg: risk.RiskConfig) -> None:
    if not count:
        return
    pipe = risk._redis().pipeline()
    pipe.incrby(key, count)
    pipe.expire(key, cfg.rate_limit_window_s * 2)
    pipe.execute()


def orders_submit_batch(*, account: BrokerageAccount, items: Sequence[OrderRequest]) -> list[BatchOutcome]:
    """Judge and write a batch of orders (see the module docstring); one outcome per item, in item order."""
    if len(items) > MAX_BATCH:
        raise ValidationError(f"orders: at most {MAX_BATCH} orders per batch", field="orders")
    items = [dc_replace(d, symbol=d.symbol.upper()) for d in items]
    outcomes: list[BatchOutcome | None] = [None] * len(items)
    cfg = risk.risk_config()
    now = market_clock().now()
    symbols = {d.symbol for d in items}
    # First lock of the caller's transaction (asset -> ledger, as order_submit and the split).
    assets = services.assets_key_share(symbols=symbols)
    coids = [d.client_order_id for d in items if d.client_order_id]
    stored: dict[str, tuple[Order, list[Order]]] = {}
    if coids:
        for o in Order.objects.filter(account=account, client_order_id__in=coids).prefetch_related("legs"):
            stored[o.client_order_id] = (o, list(o.legs.all()))
    account_error: BrokerageError | None = None
    try:
        services._account_trading_check(account)
    except BrokerageError as exc:
        account_error = exc
    resting: dict[tuple[str, str], list[RestingOrder]] = {}
    # Stored open orders only on the sides the items can cross (a batch of buys reads no resting buys), as
    # plain rows: an account with thousands of resting orders made this read most of a batch's CPU when it
    # built an ORM instance per order.
    opposite_sides = sorted({"sell" if d.side == "buy" else "buy" for d in items})
    for stored_order in open_orders_crossable(
        account_id=account.pk, symbols=sorted(symbols), sides=opposite_sides
    ):
        resting.setdefault((stored_order.symbol, stored_order.side), []).append(stored_order)
    rate_key, rate_used = _rate_window(str(account.id), cfg)

    accepted: list[tuple[Order, list[Order], ec.NewOrder]] = []
    in_batch: dict[str, tuple[OrderRequest, BatchOutcome]] = {}
    with transaction.atomic():
        res = reservations_open(account=account, sell_symbols={d.symbol for d in items if d.side == "sell"})
        for i, data in enumerate(items):
            coid = data.client_order_id
            if coid is not None and coid in stored:
                order, legs = stored[coid]
                same = _same_terms(_terms(order, legs), data)
                outcomes[i] = (
                    BatchOutcome(STATUS_REPLAYED, order, legs)
                    if same
                    else BatchOutcome(_duplicate().status, error=_duplicate())
                )
                continue
            if coid is not None and coid in in_batch:
                first, first_outcome = in_batch[coid]
                same = first == data and first_outcome.order is not None
                outcomes[i] = (
                    BatchOutcome(STATUS_REPLAYED, first_outcome.order, first_outcome.legs)
                    if same
                    else BatchOutcome(_duplicate().status, error=_duplicate())
                )
                continue
            try:
                outcome = _judge(
                    account, data, assets, account_error, resting, res, cfg, now, rate_used, accepted
                )
            except BrokerageError as exc:
                outcome = BatchOutcome(exc.status, error=exc)
            outcomes[i] = outcome
            if coid is not None and outcome.order is not None:
                in_batch[coid] = (data, outcome)
        if accepted:
            _write(res, accepted)
            _rate_consume(rate_key, len(accepted), cfg)
    return [o for o in outcomes if o is not None]


def _judge(
    account: BrokerageAccount,
    data: OrderRequest,
    assets: dict[str, Asset],
    account_error: BrokerageError | None,
    resting: dict[tuple[str, str], list[RestingOrder]],
    res: AccountReservations,
    cfg: risk.RiskConfig,
    now: datetime,
    rate_used: int,
    accepted: list[tuple[Order, list[Order], ec.NewOrder]],
) -> BatchOutcome:
    """One item through ``order_submit``'s checks, in its order; on success it joins ``accepted``."""
    asset = assets.get(data.symbol)
    if asset is None:
        raise ValidationError(
            f"symbol: unknown asset {data.symbol!r}", field="symbol", error="unknown_symbol"
        )
    services._validate_shape(data, asset)
    client_order_id = data.client_order_id
    if client_order_id is None:
        client_order_id = str(uuid.uuid4())
    else:
        services.client_order_id_format_check(client_order_id)
    if account_error is not None:
        raise account_error
    services._validate_asset(asset)
    services._session_check(data)
    ref = services.reference_price(asset)
    services._price_collar(data, ref, cfg)
    worst = services._worst_price(data, ref, cfg)
    services._size_limits(data, worst, cfg)
    _crossing_check(resting, data, cfg)
    order = services.order_new(
        account=account, asset=asset, data=data, client_order_id=client_order_id, now=now
    )
    command = services._engine_command(order, data)  # unit conversion: 422 on over-precise input
    legs = services._legs(order, data)
    if rate_used + len(accepted) + 1 > cfg.rate_limit_count:
        raise risk.violation(
            "order_rate_limit",
            f"More than {cfg.rate_limit_count} orders in {cfg.rate_limit_window_s} s.",
            inputs={
                "account_id": str(account.id),
                "count": rate_used + len(accepted) + 1,
                "window_s": cfg.rate_limit_window_s,
            },
            threshold=cfg.rate_limit_count,
            config=cfg,
        )
    _reserve(res, order, data, worst, ref, cfg)
    accepted.append((order, legs, command))
    if data.order_class != "oco":
        resting.setdefault((order.symbol, order.side), []).append(
            RestingOrder(order.id, order.type, order.limit_price, order.symbol, order.side)
        )
    return BatchOutcome(STATUS_CREATED, order, legs)


def _write(res: AccountReservations, accepted: Sequence[tuple[Order, list[Order], ec.NewOrder]]) -> None:
    """Bulk-insert the accepted orders, their legs, holds/reservations and engine commands."""
    rows = [o for o, _, _ in accepted] + [leg for _, legs, _ in accepted for leg in legs]
    try:
        with transaction.atomic():
            copy_insert(Order, rows)  # keys are the orders' own UUIDs
    except IntegrityError as exc:
        # A concurrent request took one of the client_order_ids after we read them: retrying the batch
        # (same Idempotency-Key or same client_order_ids) gets the per-item answers.
        raise ValidationError(
            "client_order_id must be unique (taken concurrently); retry the batch",
            field="client_order_id",
            error="duplicate_client_order_id",
        ) from exc
    res.flush()
    events_record_bulk(
        [
            EventSpec(
                topic=services.COMMANDS_TOPIC,
                key=order.symbol,
                event_type="orders.OrderSubmitted",
                aggregate_type="order",
                aggregate_id=str(order.id),
                payload={"command": msgspec.to_builtins(command), "account_id": str(order.account_id)},
            )
            for order, _, command in accepted
        ]
    )
