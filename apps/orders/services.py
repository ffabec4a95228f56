"""Order writes: submit, cancel, replace, close positions.

Invariants:
- ``order_submit`` validates, runs pre-trade risk, writes the Order (and its legs), places the cash hold or
  share reservation, and records the engine command in the outbox — all in ONE transaction (the caller's; the
  API opens it durably through ``idempotent_execute``). A rejection raises before anything is written, and an
  error after the first write rolls everything back.
- The outbox payload is the engine contract: ``payload["command"] == msgspec.to_builtins(cmd)`` for an
  ``engine.commands`` struct, ``payload["account_id"]`` the account's id (see docs/interfaces.md).
- Orders outside the session are REJECTED (``market_closed``), never queued: ``opg`` is accepted only
  outside regular hours (it waits for the opening auction), ``cls`` only before the close, and
  ``extended_hours`` limit day orders in the pre/post sessions too.
- Locks: the account's orders are serialized by the settlement hold (it locks the account's cash row);
  ``order_cancel``/``order_replace`` lock the order row itself (``select_for_update``).
- Lock order asset -> order -> ledger: ``order_submit``, ``order_replace`` (before it locks the order) and the
  batch path read their asset(s) ``FOR KEY SHARE`` first, in the caller's transaction (``assets_key_share``); a
  split locks the asset ``FOR UPDATE`` before anything else (``asset_lock_for_split``), then the symbol's open
  orders (``open_orders_lock_for_split``), then ledger rows. KEY SHARE never waits
  for other orders or market-data price updates (``FOR NO KEY UPDATE``), only for a split in progress.
- Splits: every order command carries ``split_epoch`` = the ``Asset.split_epoch`` its transaction read with
  the asset, under that lock (the terms it was priced and checked under); ``orders_adjust_for_split``
  increments it and sends the new value on ``SplitApply``. The lock makes a split wait for order transactions
  that read the asset before it and see their rows (so it adjusts them; their commands, earlier in the
  outbox, carry the old epoch and are adjusted by ``SplitApply`` in the engine too), and makes an order that
  comes after the split read the new epoch and terms. The engine still rejects an order command whose epoch
  is not the symbol's (``split_epoch_stale``): the backstop for a producer that skips the lock.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Iterable
from dataclasses import replace as dc_replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import msgspec
from django.db import IntegrityError, transaction
from django.db.models import F

from apps.accounts.models import BrokerageAccount
from apps.core.errors import NotCancelable, NotFound, ValidationError
from apps.core.markettime import Phase
from apps.core.markettime_config import market_calendar, market_clock
from apps.core.money import WIDE
from apps.core.outbox import event_record
from apps.core.sql import (
    constraint_name,
    insert_one,
    insert_statement,
    inserted,
    models_from_sql,
    select_list,
)
from apps.orders import risk
from apps.orders.models import CLIENT_ORDER_ID_UNIQUE, Asset, Order
from apps.orders.selectors import open_orders_crossable
from apps.orders.types import OrderRequest, ReplaceRequest
from engine import commands as ec
from engine import units

COMMANDS_TOPIC = "orders.commands"
MAX_CLIENT_ORDER_ID = 128


class _DryRun(Exception):
    def __init__(self, order: Order) -> None:
        self.order = order
        super().__init__("dry run")


# ----------------------------------------------------------------------------------------- helpers


def _optional(module: str, name: str) -> Any:
    """A function of another app that may not be committed yet (the parallel build); None if absent."""
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def _account_trading_check(account: BrokerageAccount) -> None:
    """Account active, KYC-approved and not blocked (apps.accounts selector when present)."""
    account_trading_check = _optional("apps.accounts.selectors", "account_trading_check")
    if account_trading_check is not None:
        account_trading_check(account)
        return
    # LOCAL FALLBACK until apps.accounts.selectors.account_trading_check exists: same errors as documented.
    if account.status not in (BrokerageAccount.Status.APPROVED, BrokerageAccount.Status.ACTIVE):
        raise risk.violation(
            "account_not_active",
            "The account is not approved for trading.",
            inputs={"status": account.status},
            threshold=["APPROVED", "ACTIVE"],
        )
    if account.trading_blocked or account.account_blocked:
        raise risk.violation(
            "trading_blocked",
            "Trading is blocked on this account.",
            inputs={"trading_blocked": account.trading_blocked, "account_blocked": account.account_blocked},
            threshold=False,
        )
    if account.trading_halted_reason:
        raise risk.violation(
            "trading_halted",
            "Trading is halted on this account.",
            inputs={"reason": account.trading_halted_reason},
            threshold="",
        )


def _e4(value: Decimal | None, field: str) -> int | None:
    if value is None:
        return None
    try:
        return units.price_to_e4(value)
    except units.UnitError as exc:
        raise ValidationError(f"{field}: {exc}", field=field, error="too_precise") from exc


def _e9(value: Decimal | None, field: str) -> int | None:
    if value is None:
        return None
    try:
        return units.qty_to_e9(value)
    except units.UnitError as exc:
        raise ValidationError(f"{field}: {exc}", field=field, error="too_precise") from exc


def _bps(value: Decimal | None, field: str) -> int | None:
    if value is None:
        return None
    try:
        return units.percent_to_bps(value)
    except units.UnitError as exc:
        raise ValidationError(f"{field}: {exc}", field=field, error="too_precise") from exc


def _invalid(field: str, message: str, error: str = "invalid_order") -> ValidationError:
    return ValidationError(f"{field}: {message}" if field else message, field=field or None, error=error)


def _on_tick(value: Decimal | None, asset: Asset, field: str) -> None:
    if value is None:
        return
    if value <= 0:
        raise _invalid(field, "must be greater than zero", "invalid_price")
    if value % asset.price_increment != 0:
        raise _invalid(field, f"{value} is not a multiple of the tick {asset.price_increment}", "off_tick")


def _unknown_symbol(symbol: str) -> ValidationError:
    return ValidationError(f"symbol: unknown asset {symbol!r}", field="symbol", error="unknown_symbol")


def asset_for_symbol(symbol: str) -> Asset:
    asset = Asset.objects.filter(symbol=symbol.upper()).first()
    if asset is None:
        raise _unknown_symbol(symbol)
    return asset


def assets_key_share(*, symbols: Iterable[str]) -> dict[str, Asset]:
    """The assets of ``symbols`` read ``FOR KEY SHARE``, locked in primary-key order; unknown symbols absent.

    Taken first in an order transaction (submit, batch): a split's ``FOR UPDATE`` on the asset waits until
    this transaction ends, and this read waits for a split in progress and then returns the post-split row
    (READ COMMITTED re-reads a locked row). KEY SHARE does not conflict with other KEY SHARE holders (orders
    of the symbol) nor with plain UPDATEs (``FOR NO KEY UPDATE``: reference-price refreshes), so the hot
    path only ever waits for a split. Held until the caller's transaction ends (useless in autocommit).
    """
    wanted = sorted({s.upper() for s in symbols})
    if not wanted:
        return {}
    return {a.symbol: a for a in models_from_sql(Asset, _ASSETS_KEY_SHARE_SQL, [wanted])}


# Built once (identifiers from model meta), as every order runs one of them.
_ASSETS_KEY_SHARE_SQL = (
    f"SELECT {select_list(Asset)} FROM {Asset._meta.db_table} WHERE symbol = ANY(%s) "  # noqa: S608
    f"ORDER BY {Asset._meta.pk.column} FOR KEY SHARE"
)
_ASSET_KEY_SHARE_OF_ORDER_SQL = (
    f"SELECT {select_list(Asset, 'a')} FROM {Asset._meta.db_table} a "  # noqa: S608
    f"JOIN {Order._meta.db_table} o ON o.asset_id = a.{Asset._meta.pk.column} "
    "WHERE o.id = %s AND o.account_id = %s FOR KEY SHARE OF a"
)


def _asset_key_share_of_order(*, account: BrokerageAccount, order_id: uuid.UUID) -> Asset:
    """The asset of an order of ``account``, read ``FOR KEY SHARE`` (before the order is locked)."""
    found = models_from_sql(Asset, _ASSET_KEY_SHARE_OF_ORDER_SQL, [order_id, account.pk])
    if not found:
        raise NotFound("order not found", field="order_id")
    return found[0]


def asset_lock_for_split(*, symbol: str) -> Asset | None:
    """Lock the asset ``FOR UPDATE`` for a split: the split's FIRST lock (before any ledger or order row).

    It waits for every order transaction holding the asset ``FOR KEY SHARE`` (their rows are then committed
    and the split's later statements see them) and blocks new ones until the split commits. Taking it again
    in ``orders_adjust_for_split`` is a no-op within the same transaction.
    """
    return Asset.objects.select_for_update().filter(symbol=symbol).first()


def open_orders_lock_for_split(*, symbol: str) -> int:
    """Lock the symbol's open orders in primary-key order (the split's second lock, still before the ledger).

    A split then locks asset -> orders -> ledger like the order paths (``order_replace``) and the projection
    (order rows, then ledger rows), instead of taking holders' ledger rows before the orders. Returns how many.
    """
    return len(
        Order.objects.select_for_update()
        .filter(symbol=symbol, status__in=Order.OPEN)
        .order_by("id")
        .values_list("id", flat=True)
    )


def reference_price(asset: Asset) -> Decimal | None:
    """The price risk checks compare against (the asset's reference; market data refreshes it)."""
    return asset.reference_price


# ----------------------------------------------------------------------------------------- validation


def _validate_shape(data: OrderRequest, asset: Asset) -> None:
    """Static rules of Alpaca's order model (no database state beyond the asset)."""
    t, tif, cls = data.type, data.time_in_force, data.order_class
    if (data.qty is None) == (data.notional is None):
        raise _invalid("qty", "exactly one of qty and notional is required")
    if data.qty is not None and data.qty <= 0:
        raise _invalid("qty", "must be greater than zero", "invalid_quantity")
    if data.notional is not None:
        if data.notional <= 0:
            raise _invalid("notional", "must be greater than zero", "invalid_quantity")
        if t != "market":
            raise _invalid("notional", "notional is only allowed for market orders")
        if tif != "day":
            raise _invalid("time_in_force", "notional orders must be day orders")
    if t in ("limit", "stop_limit") and data.limit_price is None:
        raise _invalid("limit_price", f"required for {t} orders")
    if t in ("market", "stop", "trailing_stop") and data.limit_price is not None and cls != "oco":
        raise _invalid("limit_price", f"not allowed for {t} orders")
    if t in ("stop", "stop_limit") and data.stop_price is None:
        raise _invalid("stop_price", f"required for {t} orders")
    if t in ("market", "limit", "trailing_stop") and data.stop_price is not None:
        raise _invalid("stop_price", f"not allowed for {t} orders")
    if t == "trailing_stop":
        if (data.trail_price is None) == (data.trail_percent is None):
            raise _invalid("trail_price", "exactly one of trail_price and trail_percent is required")
        if data.trail_percent is not None and not (0 < data.trail_percent < 100):
            raise _invalid("trail_percent", "must be between 0 and 100 (exclusive)", "invalid_price")
    elif data.trail_price is not None or data.trail_percent is not None:
        raise _invalid("trail_price", "only allowed for trailing_stop orders")
    if data.extended_hours and not (t == "limit" and tif == "day"):
        raise _invalid("extended_hours", "only limit day orders may trade in extended hours")
    for field in ("limit_price", "stop_price", "trail_price"):
        _on_tick(getattr(data, field), asset, field)
    if data.qty is not None:
        if data.qty < asset.min_order_size:
            raise _invalid("qty", f"below the minimum order size {asset.min_order_size}", "invalid_quantity")
        if data.qty % asset.min_trade_increment != 0:
            raise _invalid("qty", f"not a multiple of {asset.min_trade_increment}", "off_lot")
        if data.qty != data.qty.to_integral_value():
            if not asset.fractionable:
                raise _invalid("qty", f"{asset.symbol} is not fractionable", "fractional_not_allowed")
            if tif != "day" or cls != "simple":
                raise _invalid("qty", "fractional orders must be simple day orders", "fractional_not_allowed")
    if data.notional is not None and not asset.fractionable:
        raise _invalid("notional", f"{asset.symbol} is not fractionable", "fractional_not_allowed")
    _validate_class(data, asset)


def _validate_class(data: OrderRequest, asset: Asset) -> None:
    cls, tp, sl = data.order_class, data.take_profit, data.stop_loss
    if cls == "simple":
        if tp is not None or sl is not None:
            raise _invalid("order_class", "take_profit/stop_loss need order_class bracket, oco or oto")
        return
    if data.time_in_force not in ("day", "gtc"):
        raise _invalid("time_in_force", f"{cls} orders must be day or gtc")
    if data.qty is None:
        raise _invalid("qty", f"{cls} orders need qty")
    if data.extended_hours:
        raise _invalid("extended_hours", f"{cls} orders cannot trade in extended hours")
    if tp is not None:
        _on_tick(tp.limit_price, asset, "take_profit.limit_price")
    if sl is not None:
        _on_tick(sl.stop_price, asset, "stop_loss.stop_price")
        _on_tick(sl.limit_price, asset, "stop_loss.limit_price")
    if cls == "oto":
        if (tp is None) == (sl is None):
            raise _invalid("take_profit", "oto orders need exactly one of take_profit and stop_loss")
    elif tp is None:
        raise _invalid("take_profit", f"{cls} orders need take_profit.limit_price")
    elif sl is None:
        raise _invalid("stop_loss", f"{cls} orders need stop_loss.stop_price")
    if cls == "bracket" and data.type not in ("market", "limit"):
        raise _invalid("type", "bracket entries must be market or limit orders")
    if cls == "oco":
        if data.type != "limit":
            raise _invalid("type", "oco orders are limit orders")
        if tp is not None and data.limit_price != tp.limit_price:
            raise _invalid("take_profit.limit_price", "must equal limit_price for oco orders")
    if cls in ("bracket", "oto") and data.side != "buy":
        # Cash accounts cannot short: the entry buys, the held exit legs sell what it bought.
        raise _invalid("side", f"{cls} entries must be buys (no short selling on cash accounts)")
    if cls == "oco" and data.side != "sell":
        raise _invalid("side", "oco orders exit a long position: side must be sell")
    if tp is not None and sl is not None and tp.limit_price <= sl.stop_price:
        raise _invalid("take_profit.limit_price", "must be above stop_loss.stop_price", "invalid_price")
    if cls == "bracket" and data.limit_price is not None:
        if tp is not None and tp.limit_price <= data.limit_price:
            raise _invalid("take_profit.limit_price", "must be above the entry limit price", "invalid_price")
        if sl is not None and sl.stop_price >= data.limit_price:
            raise _invalid("stop_loss.stop_price", "must be below the entry limit price", "invalid_price")


def _validate_asset(asset: Asset) -> None:
    if asset.status != Asset.Status.ACTIVE or not asset.tradable:
        raise risk.violation(
            "asset_not_tradable",
            f"{asset.symbol} is not tradable.",
            inputs={"symbol": asset.symbol, "status": asset.status, "tradable": asset.tradable},
            threshold={"status": "active", "tradable": True},
        )
    if asset.halted:
        raise risk.violation(
            "asset_halted",
            f"Trading in {asset.symbol} is halted.",
            inputs={"symbol": asset.symbol, "halted": True},
            threshold={"halted": False},
        )


def _session_check(data: OrderRequest) -> None:
    """Orders outside their session are rejected (``market_closed``), never queued."""
    calendar = market_calendar()
    now = market_clock().now()
    phase = calendar.phase(now)
    tif = data.time_in_force
    allowed: tuple[Phase, ...]
    if tif == "opg":
        allowed = (Phase.PRE_MARKET, Phase.POST_MARKET, Phase.CLOSED)
    elif tif == "cls":
        allowed = (Phase.PRE_MARKET, Phase.REGULAR)
    elif data.extended_hours:
        allowed = (Phase.PRE_MARKET, Phase.REGULAR, Phase.POST_MARKET)
    else:
        allowed = (Phase.REGULAR,)
    if phase not in allowed:
        rule = "auction_closed" if tif in ("opg", "cls") else "market_closed"
        raise risk.violation(
            rule,
            f"{tif} orders are not accepted in the {phase.value} phase; next open "
            f"{calendar.next_open(now).isoformat()}.",
            inputs={
                "time_in_force": tif,
                "extended_hours": data.extended_hours,
                "phase": phase.value,
                "now": now.isoformat(),
            },
            threshold=[p.value for p in allowed],
        )


def _worst_price(data: OrderRequest, ref: Decimal | None, cfg: risk.RiskConfig) -> Decimal | None:
    """The highest price a buy (lowest a sell) may pay per share, for holds and max-notional."""
    if data.type in ("limit", "stop_limit"):
        return data.limit_price
    if data.type == "stop" and data.stop_price is not None:
        base = data.stop_price
    elif ref is not None:
        base = ref
    else:
        return None
    factor = (1 + cfg.price_collar) if data.side == "buy" else (1 - cfg.price_collar)
    return risk.mul(base, factor)


def _price_collar(data: OrderRequest, ref: Decimal | None, cfg: risk.RiskConfig) -> None:
    if data.limit_price is None or ref is None:
        return
    if data.side == "buy":
        bound = risk.mul(ref, 1 + cfg.price_collar)
        bad = data.limit_price > bound
    else:
        bound = risk.mul(ref, 1 - cfg.price_collar)
        bad = data.limit_price < bound
    if bad:
        raise risk.violation(
            "price_collar",
            f"limit_price {data.limit_price} is outside the collar around the reference price {ref}.",
            inputs={
                "side": data.side,
                "limit_price": data.limit_price,
                "reference_price": ref,
                "collar": cfg.price_collar,
            },
            threshold=bound,
            config=cfg,
        )


def _size_limits(data: OrderRequest, worst: Decimal | None, cfg: risk.RiskConfig) -> Decimal:
    """Max quantity and max notional per order; returns the estimated notional."""
    if data.qty is not None and data.qty > cfg.max_qty:
        raise risk.violation(
            "max_order_qty",
            f"qty {data.qty} exceeds the per-order maximum {cfg.max_qty}.",
            inputs={"qty": data.qty},
            threshold=cfg.max_qty,
            config=cfg,
        )
    if data.notional is not None:
        notional = data.notional
    elif worst is None:
        raise risk.violation(
            "reference_price_required",
            "No reference price for this symbol: only limit orders are accepted.",
            inputs={"symbol": data.symbol, "type": data.type},
            threshold=None,
            config=cfg,
        )
    else:
        assert data.qty is not None
        notional = risk.mul(worst, data.qty)
    if notional > cfg.max_notional:
        raise risk.violation(
            "max_order_notional",
            f"Estimated notional {risk.money_ceil(notional)} exceeds the per-order maximum {cfg.max_notional}.",
            inputs={"qty": data.qty, "notional": data.notional, "price": worst},
            threshold=cfg.max_notional,
            config=cfg,
        )
    return notional


def _crossing_prevention(account: BrokerageAccount, data: OrderRequest, cfg: risk.RiskConfig) -> None:
    """Self-trade (crossing one's own resting limit) and wash-trade prevention, before the engine's own STP."""
    if data.order_class == "oco":
        return  # an exit of an existing position; its legs never rest against a fresh entry here
    opposite = "sell" if data.side == "buy" else "buy"
    resting = open_orders_crossable(account_id=account.pk, symbols=[data.symbol.upper()], sides=[opposite])
    crossing_rules_check(resting, data, cfg)


class RestingTerms(Protocol):
    """What the crossing rules read of an opposite open order (a stored Order or a batch's in-memory item)."""

    @property
    def id(self) -> Any: ...
    @property
    def type(self) -> str: ...
    @property
    def limit_price(self) -> Decimal | None: ...


def crossing_rules_check(resting: Iterable[RestingTerms], data: OrderRequest, cfg: risk.RiskConfig) -> None:
    """Self-trade and wash-trade rules of ``data`` against the caller's opposite open orders."""
    unbounded_new = data.type in ("market", "stop", "trailing_stop")
    for other in resting:
        if other.type == "limit" and other.limit_price is not None:
            crosses = unbounded_new or (
                data.limit_price is not None
                and (
                    data.limit_price >= other.limit_price
                    if data.side == "buy"
                    else data.limit_price <= other.limit_price
                )
            )
            if crosses:
                raise risk.violation(
                    "self_trade_prevention",
                    f"The order would trade against your own open order {other.id}.",
                    inputs={
                        "side": data.side,
                        "type": data.type,
                        "limit_price": data.limit_price,
                        "resting_order_id": str(other.id),
                        "resting_limit_price": other.limit_price,
                    },
                    threshold=other.limit_price,
                    config=cfg,
                )
        elif unbounded_new or other.type in ("market", "stop", "trailing_stop"):
            # Neither price is bounded: any match between the two would be a wash trade.
            raise risk.violation(
                "wash_trade_prevention",
                f"An unpriced order may not oppose your own open {other.type} order {other.id}.",
                inputs={
                    "side": data.side,
                    "type": data.type,
                    "resting_order_id": str(other.id),
                    "resting_type": other.type,
                },
                threshold="no opposite open order without a limit price",
                config=cfg,
            )


# ----------------------------------------------------------------------------------------- commands


def _engine_command(order: Order, data: OrderRequest) -> ec.NewOrder:
    tp = data.take_profit
    sl = data.stop_loss
    return ec.NewOrder(
        order_id=str(order.id),
        account_id=str(order.account_id),
        symbol=order.symbol,
        side=data.side,  # type: ignore[arg-type]
        type=data.type,  # type: ignore[arg-type]
        tif=data.time_in_force,  # type: ignore[arg-type]
        qty_e9=_e9(data.qty, "qty"),
        notional_e4=_e4(data.notional, "notional"),
        limit_price_e4=_e4(data.limit_price, "limit_price"),
        stop_price_e4=_e4(data.stop_price, "stop_price"),
        trail_price_e4=_e4(data.trail_price, "trail_price"),
        trail_percent_bps=_bps(data.trail_percent, "trail_percent"),
        extended_hours=data.extended_hours,
        order_class=data.order_class,  # type: ignore[arg-type]
        take_profit=ec.TakeProfit(limit_price_e4=_e4(tp.limit_price, "take_profit.limit_price") or 0)
        if tp is not None
        else None,
        stop_loss=ec.StopLoss(
            stop_price_e4=_e4(sl.stop_price, "stop_loss.stop_price") or 0,
            limit_price_e4=_e4(sl.limit_price, "stop_loss.limit_price"),
        )
        if sl is not None
        else None,
        split_epoch=order.asset.split_epoch,
    )


def command_record(
    *, order: Order, event_type: str, command: ec.Command, new_order: bool = False, insert_order: bool = False
) -> None:
    """The one place that writes an engine command to the outbox (payload shape = the engine contract).

    ``new_order``: the order row was inserted in this transaction, so this is its aggregate's first event.
    ``insert_order``: the order row is new and inserted by the same statement as its first event (implies
    ``new_order``; ``event_record``'s ``aggregate_insert``: a constraint of either raises that IntegrityError).
    """
    event_record(
        aggregate_insert=insert_statement(order) if insert_order else None,
        topic=COMMANDS_TOPIC,
        key=order.symbol,
        event_type=event_type,
        aggregate_type="order",
        aggregate_id=str(order.id),
        payload={"command": msgspec.to_builtins(command), "account_id": str(order.account_id)},
        first_of_aggregate=new_order or insert_order,
    )
    if insert_order:
        inserted(order)


def _settlement() -> Any:
    return importlib.import_module("apps.settlement.services")


def _reserve(
    order: Order, data: OrderRequest, worst: Decimal | None, ref: Decimal | None, cfg: risk.RiskConfig
) -> None:
    """Hold cash for a buy (worst case) or reserve shares for a sell, keyed by the order id."""
    settlement = _settlement()
    if data.side == "buy":
        if data.notional is not None:
            amount = risk.money_ceil(data.notional)
        else:
            assert worst is not None
            assert data.qty is not None
            amount = risk.money_ceil(risk.mul(worst, data.qty))
        settlement.hold_place(account=order.account, order_id=str(order.id), amount=amount)
        order.reserved_amount = amount
    else:
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
        settlement.shares_reserve(account=order.account, order_id=str(order.id), symbol=order.symbol, qty=qty)
        order.reserved_qty = qty


def _legs(order: Order, data: OrderRequest) -> list[Order]:
    """Leg rows for bracket/oto (held exits, opposite side) and oco (the stop-loss sibling, same side)."""
    cls = data.order_class
    if cls == "simple":
        return []
    exit_side = data.side if cls == "oco" else ("sell" if data.side == "buy" else "buy")
    specs: list[tuple[str, str, Decimal | None, Decimal | None]] = []
    if data.take_profit is not None and cls != "oco":
        specs.append((Order.LegRole.TAKE_PROFIT, "limit", data.take_profit.limit_price, None))
    if data.stop_loss is not None:
        sl = data.stop_loss
        specs.append(
            (
                Order.LegRole.STOP_LOSS,
                "stop" if sl.limit_price is None else "stop_limit",
                sl.limit_price,
                sl.stop_price,
            )
        )
    # The oco stop-loss is live at once; bracket/oto exits are held until the entry fills.
    status = Order.Status.PENDING_NEW if cls == "oco" else Order.Status.HELD
    return [
        Order(
            id=uuid.uuid4(),
            client_order_id=str(uuid.uuid4()),
            account=order.account,
            asset=order.asset,
            symbol=order.symbol,
            side=exit_side,
            type=otype,
            time_in_force=order.time_in_force,
            order_class=cls,
            qty=order.qty,
            limit_price=limit,
            stop_price=stop,
            status=status,
            parent=order,
            leg_role=role,
            created_at=order.created_at,
            updated_at=order.updated_at,
            submitted_at=order.submitted_at,
        )
        for role, otype, limit, stop in specs
    ]


def order_new(
    *, account: BrokerageAccount, asset: Asset, data: OrderRequest, client_order_id: str, now: datetime
) -> Order:
    """The unsaved ``pending_new`` Order row for a validated request (single submit and batch alike)."""
    return Order(
        id=uuid.uuid4(),
        client_order_id=client_order_id,
        account=account,
        asset=asset,
        symbol=asset.symbol,
        side=data.side,
        type=data.type,
        time_in_force=data.time_in_force,
        order_class=data.order_class,
        qty=data.qty,
        notional=data.notional,
        limit_price=data.limit_price,
        stop_price=data.stop_price,
        trail_price=data.trail_price,
        trail_percent=data.trail_percent,
        extended_hours=data.extended_hours,
        status=Order.Status.PENDING_NEW,
        created_at=now,
        updated_at=now,
        submitted_at=now,
    )


def client_order_id_format_check(value: str) -> None:
    if not value or len(value) > MAX_CLIENT_ORDER_ID or not value.isascii() or not value.isprintable():
        raise _invalid("client_order_id", f"must be 1-{MAX_CLIENT_ORDER_ID} printable ASCII characters")


def _client_order_id(account: BrokerageAccount, value: str | None, *, unique_check: bool = True) -> str:
    """The request's client_order_id (format checked) or a new one.

    ``unique_check=False``: the caller inserts the order with its IntegrityError answered as this same 422
    (the account's client_order_id unique constraint), so a read beforehand would only repeat it.
    """
    if value is None:
        return str(uuid.uuid4())
    client_order_id_format_check(value)
    if unique_check and Order.objects.filter(account=account, client_order_id=value).exists():
        raise ValidationError(
            "client_order_id must be unique", field="client_order_id", error="duplicate_client_order_id"
        )
    return value


# ----------------------------------------------------------------------------------------- services


def order_submit(*, account: BrokerageAccount, data: OrderRequest, dry_run: bool = False) -> Order:
    """Validate, risk-check and submit an order (see the module docstring). ``dry_run`` changes nothing.

    Raises ``ValidationError`` (422, names the field) or ``BusinessRuleViolation`` (403, names the rule).
    For a dry run the returned Order is unsaved; its legs are in ``order.pending_legs``.
    """
    data = dc_replace(data, symbol=data.symbol.upper())
    if data.order_class == "oco" and data.limit_price is None and data.take_profit is not None:
        # Alpaca lets an oco order give its exit limit only as take_profit.limit_price: that IS the limit.
        data = dc_replace(data, limit_price=data.take_profit.limit_price)
    # First, in the caller's transaction: the asset (terms, split epoch) under FOR KEY SHARE, so a split waits
    # for this order to commit (and then adjusts its row) or this order waits for the split (module docstring).
    asset = assets_key_share(symbols=[data.symbol]).get(data.symbol)
    if asset is None:
        raise _unknown_symbol(data.symbol)
    _validate_shape(data, asset)
    client_order_id = _client_order_id(account, data.client_order_id, unique_check=False)
    _account_trading_check(account)
    _validate_asset(asset)
    _session_check(data)
    cfg = risk.risk_config()
    ref = reference_price(asset)
    _price_collar(data, ref, cfg)
    worst = _worst_price(data, ref, cfg)
    _size_limits(data, worst, cfg)
    _crossing_prevention(account, data, cfg)
    now = market_clock().now()
    order = order_new(account=account, asset=asset, data=data, client_order_id=client_order_id, now=now)
    command = _engine_command(order, data)  # converts units: raises 422 on over-precise input
    legs = _legs(order, data)
    try:
        # Savepoints only where something is rolled back while the transaction goes on: a dry run undoes its
        # writes here. Otherwise any error fails the caller's transaction (or its savepoint, in a batch), so a
        # savepoint per block would be two round trips for nothing.
        with transaction.atomic(savepoint=dry_run):
            _reserve(order, data, worst, ref, cfg)
            for leg in legs:  # their key to the order is checked at commit (deferred), like every foreign key
                insert_one(leg)
            try:
                with transaction.atomic(savepoint=False):  # the order row and its command: one statement
                    command_record(
                        order=order,
                        event_type="orders.OrderSubmitted",
                        command=command,
                        insert_order=True,
                    )
            except IntegrityError as exc:
                if constraint_name(exc) == CLIENT_ORDER_ID_UNIQUE:
                    raise ValidationError(
                        "client_order_id must be unique",
                        field="client_order_id",
                        error="duplicate_client_order_id",
                    ) from exc
                raise
            risk.rate_limit_check(account_id=str(account.id), now=now, consume=not dry_run, config=cfg)
            if dry_run:
                raise _DryRun(order)
    except _DryRun:
        pass
    order.pending_legs = legs  # type: ignore[attr-defined]
    return order


def _lock_order(*, account: BrokerageAccount, order_id: uuid.UUID) -> Order:
    order = Order.objects.select_for_update().filter(id=order_id, account=account).first()
    if order is None:
        raise NotFound("order not found", field="order_id")
    return order


def order_cancel(*, account: BrokerageAccount, order_id: uuid.UUID) -> Order:
    """Request a cancel: the order goes ``pending_cancel``; the engine's OrderCanceled finishes it."""
    order = _lock_order(account=account, order_id=order_id)
    if not order.is_open or order.status in (Order.Status.PENDING_CANCEL, Order.Status.PENDING_REPLACE):
        raise NotCancelable(f"order is {order.status}", field="order_id")
    now = market_clock().now()
    order.status = Order.Status.PENDING_CANCEL
    order.updated_at = now
    order.save(update_fields=["status", "updated_at"])
    command_record(
        order=order, event_type="orders.CancelRequested", command=ec.CancelOrder(order_id=_engine_id(order))
    )
    return order


def _engine_id(order: Order) -> str:
    """The engine's id for an order: legs are ``{parent}:tp`` / ``{parent}:sl``."""
    if order.parent_id is None:
        return str(order.id)
    suffix = "tp" if order.leg_role == Order.LegRole.TAKE_PROFIT else "sl"
    return f"{order.parent_id}:{suffix}"


def orders_cancel_all(*, account: BrokerageAccount) -> list[tuple[Order, int, str | None]]:
    """Cancel every open order; returns (order, http status, error message) per order, Alpaca's 207 body."""
    ids = list(
        Order.objects.filter(account=account, status__in=Order.OPEN, parent__isnull=True)
        .order_by("id")
        .values_list("id", flat=True)
    )
    results: list[tuple[Order, int, str | None]] = []
    for oid in ids:
        try:
            with transaction.atomic():
                results.append((order_cancel(account=account, order_id=oid), 200, None))
        except (NotCancelable, NotFound) as exc:
            results.append((Order.objects.get(id=oid), exc.status, exc.message))
    return results


def order_replace(*, account: BrokerageAccount, order_id: uuid.UUID, data: ReplaceRequest) -> Order:
    """Replace = a new order linked to the old (``replaces``/``replaced_by``); emits ReplaceOrder.

    The old order goes ``pending_replace`` and KEEPS its hold or reservation until the engine decides: the
    projection releases it on ``OrderReplaced`` (the old order is terminal), or the old order goes back to
    open with it intact when the engine refuses (only the refused order's own hold is released). The new
    order's hold is placed now, so while the replace is pending both count (hold = open orders' reserves,
    exactly; the customer needs buying power / shares for both until the engine confirms).
    """
    # The asset first (FOR KEY SHARE), then the order, then (hold) the ledger: the split's lock order, so a
    # replace and a split of the same symbol cannot deadlock, and the replace reads the post-split row.
    asset = _asset_key_share_of_order(account=account, order_id=order_id)
    old = _lock_order(account=account, order_id=order_id)
    old.asset = asset
    if not old.is_open or old.status in (Order.Status.PENDING_CANCEL, Order.Status.PENDING_REPLACE):
        raise ValidationError(
            f"order is {old.status} and cannot be replaced", field="order_id", error="not_replaceable"
        )
    if old.parent_id is not None or old.order_class != Order.OrderClass.SIMPLE or old.notional is not None:
        raise ValidationError(
            "only simple qty orders can be replaced", field="order_id", error="not_replaceable"
        )
    if all(getattr(data, f) is None for f in ("qty", "time_in_force", "limit_price", "stop_price", "trail")):
        raise _invalid("", "nothing to replace: give qty, time_in_force, limit_price, stop_price or trail")
    assert old.qty is not None
    leaves = old.qty - old.filled_qty
    trail_price = old.trail_price
    trail_percent = old.trail_percent
    if data.trail is not None:
        if old.type != Order.Type.TRAILING_STOP:
            raise _invalid("trail", "only trailing_stop orders have a trail")
        if trail_price is not None:
            trail_price = data.trail
        else:
            trail_percent = data.trail
    request = OrderRequest(
        symbol=old.symbol,
        side=old.side,
        type=old.type,
        time_in_force=data.time_in_force or old.time_in_force,
        qty=data.qty if data.qty is not None else leaves,
        limit_price=data.limit_price if data.limit_price is not None else old.limit_price,
        stop_price=data.stop_price if data.stop_price is not None else old.stop_price,
        trail_price=trail_price,
        trail_percent=trail_percent,
        extended_hours=old.extended_hours,
        client_order_id=data.client_order_id,
    )
    _validate_shape(request, asset)
    client_order_id = _client_order_id(account, request.client_order_id)
    _account_trading_check(account)
    _validate_asset(asset)
    _session_check(request)
    cfg = risk.risk_config()
    ref = reference_price(asset)
    _price_collar(request, ref, cfg)
    worst = _worst_price(request, ref, cfg)
    _size_limits(request, worst, cfg)
    now = market_clock().now()
    new = Order(
        id=uuid.uuid4(),
        client_order_id=client_order_id,
        account=account,
        asset=asset,
        symbol=old.symbol,
        side=old.side,
        type=old.type,
        time_in_force=request.time_in_force,
        order_class=old.order_class,
        qty=request.qty,
        limit_price=request.limit_price,
        stop_price=request.stop_price,
        trail_price=request.trail_price,
        trail_percent=request.trail_percent,
        extended_hours=old.extended_hours,
        status=Order.Status.PENDING_NEW,
        replaces=old,
        created_at=now,
        updated_at=now,
        submitted_at=now,
    )
    command = ec.ReplaceOrder(
        order_id=str(old.id),
        new_order_id=str(new.id),
        qty_e9=_e9(data.qty, "qty"),
        limit_price_e4=_e4(data.limit_price, "limit_price"),
        stop_price_e4=_e4(data.stop_price, "stop_price"),
        trail_price_e4=_e4(data.trail, "trail")
        if data.trail is not None and old.trail_price is not None
        else None,
        trail_percent_bps=_bps(data.trail, "trail")
        if data.trail is not None and old.trail_price is None
        else None,
        tif=data.time_in_force,  # type: ignore[arg-type]
        split_epoch=asset.split_epoch,
    )
    _reserve(new, request, worst, ref, cfg)
    new.save(force_insert=True)
    old.status = Order.Status.PENDING_REPLACE
    old.replaced_by = new
    old.updated_at = now
    old.save(update_fields=["status", "replaced_by", "updated_at"])
    command_record(order=old, event_type="orders.ReplaceRequested", command=command)
    risk.rate_limit_check(account_id=str(account.id), now=now, consume=True, config=cfg)
    return new


def position_close(
    *, account: BrokerageAccount, symbol: str, qty: Decimal | None = None, percentage: Decimal | None = None
) -> Order:
    """Close (part of) a long position with a market sell day order (Alpaca's DELETE /v2/positions/{symbol})."""
    held = importlib.import_module("apps.settlement.selectors").shares_available(account, symbol.upper())
    if qty is None:
        qty = (
            held
            if percentage is None
            else WIDE.divide(WIDE.multiply(held, percentage), Decimal(100)).quantize(
                Decimal("0.000000001"), rounding="ROUND_DOWN", context=WIDE
            )
        )
    if qty <= 0:
        raise NotFound("position not found", field="symbol")
    return order_submit(
        account=account,
        data=OrderRequest(symbol=symbol, side="sell", type="market", time_in_force="day", qty=qty),
    )


# ----------------------------------------------------------------------------------------- corporate actions
# Called by apps.settlement.corporate_actions.corporate_action_apply inside its transaction: the split, the
# Order rows and the engine's SplitApply command (outbox, after the cancels it issues) change together. The
# engine applies the same rounding rules to its books (engine.book.split_price / split_qty).


def _split_qty(value: Decimal, ratio_num: int, ratio_den: int, *, whole: bool) -> Decimal:
    """``value * num / den`` rounded down: to whole shares when ``whole``, else to the 9-dp share quantum."""
    scaled = WIDE.divide(WIDE.multiply(value, Decimal(ratio_num)), Decimal(ratio_den))
    quantum = Decimal(1) if whole else Decimal("0.000000001")
    return scaled.quantize(quantum, rounding="ROUND_FLOOR")


def _split_price(
    value: Decimal | None, tick: Decimal, ratio_num: int, ratio_den: int, *, up: bool
) -> Decimal | None:
    if value is None:
        return None
    scaled = WIDE.divide(WIDE.multiply(value, Decimal(ratio_den)), Decimal(ratio_num))
    ticks = (scaled / tick).quantize(Decimal(1), rounding="ROUND_CEILING" if up else "ROUND_FLOOR")
    return max(ticks, Decimal(1)) * tick


# The engine's domain (engine.commands) in the Order rows' units: a split that would take an order beyond it
# cancels the order, as the engine does (engine.book.split_keeps), so the two agree and every amount stays
# inside what the engine's snapshots and these columns hold.
_DOMAIN_QTY = units.e9_to_qty(ec.QTY_E9_MAX)
_DOMAIN_PRICE = units.e4_to_price(ec.PRICE_E4_MAX)


def _split_in_domain(order: Order, tick: Decimal, ratio_num: int, ratio_den: int) -> bool:
    """Whether ``order``'s terms after the split stay inside the engine's domain (``engine.book.split_keeps``).

    Quantity (filled plus leaves) at most ``QTY_E9_MAX``; limit, trail price and water mark (``hwm``) at most
    ``PRICE_E4_MAX``, and the stop too unless the order trails (a trailing stop derives from its water mark).
    """
    buy = order.side == Order.Side.BUY
    if order.qty is not None:
        leaves = order.qty - order.filled_qty
        whole = not buy or leaves == leaves.to_integral_value()
        new_qty = _split_qty(leaves, ratio_num, ratio_den, whole=whole) + _split_qty(
            order.filled_qty, ratio_num, ratio_den, whole=False
        )
        if new_qty > _DOMAIN_QTY:
            return False
    prices = [
        _split_price(order.limit_price, tick, ratio_num, ratio_den, up=not buy),
        _split_price(order.trail_price, tick, ratio_num, ratio_den, up=False),
        _split_price(order.hwm, tick, ratio_num, ratio_den, up=False),
    ]
    if order.type != Order.Type.TRAILING_STOP:
        prices.append(_split_price(order.stop_price, tick, ratio_num, ratio_den, up=buy))
    return all(price is None or price <= _DOMAIN_PRICE for price in prices)


def _split_mark(value: Decimal | None, tick: Decimal, ratio_num: int, ratio_den: int) -> Decimal | None:
    """The reference price through a split: down on the tick, at most the domain's top tick (the engine's
    ``engine.book.split_mark``)."""
    scaled = _split_price(value, tick, ratio_num, ratio_den, up=False)
    if scaled is None:
        return None
    return min(scaled, (_DOMAIN_PRICE / tick).to_integral_value(rounding="ROUND_FLOOR") * tick)


def orders_adjust_for_split(*, symbol: str, ratio_num: int, ratio_den: int, split_id: str) -> list[Order]:
    """Put every open order of ``symbol`` on post-split terms; returns the orders changed (or canceled).

    Quantities scale by num/den rounded DOWN (sell orders and whole-share orders to whole shares, so sells
    never exceed the post-split position, which keeps whole shares only); prices scale by den/num on the tick,
    rounded in the customer's favour (buy limit and sell stop down, sell limit and buy stop up), so a buy's
    worst-case cost never grows and its cash hold still covers it. An order whose remaining quantity rounds
    to zero, or whose new terms leave the engine's domain (``_split_in_domain``), is canceled through the
    engine (``order_cancel``). The asset's reference price scales too (at most the domain's top tick).
    Last, ``SplitApply(split_id=...)`` goes to the engine through the outbox (after those cancels, same
    key, so the engine sees them first); the engine puts its resting orders on the same terms, once per
    ``split_id``.
    """
    if ratio_num <= 0 or ratio_den <= 0 or ratio_num == ratio_den:
        raise ValidationError("a split ratio needs two different positive integers", field="ratio")
    asset = asset_lock_for_split(symbol=symbol)  # already held when called by the corporate-action service
    tick = asset.price_increment if asset is not None else Decimal("0.01")
    epoch: int | None = None  # no Asset row: no order can carry an epoch, the engine keeps its own
    if asset is not None:
        if asset.reference_price is not None:
            asset.reference_price = _split_mark(asset.reference_price, tick, ratio_num, ratio_den)
        # The row is locked: the new epoch is exactly the locked value + 1.
        epoch = asset.split_epoch + 1
        asset.split_epoch = F("split_epoch") + 1
        asset.save(update_fields=["reference_price", "split_epoch"])
        asset.split_epoch = epoch
    changed: list[Order] = []
    for order in (
        Order.objects.select_for_update().filter(symbol=symbol, status__in=Order.OPEN).order_by("id")
    ):
        buy = order.side == Order.Side.BUY
        in_flight = order.status in (Order.Status.PENDING_CANCEL, Order.Status.PENDING_REPLACE)
        if not _split_in_domain(order, tick, ratio_num, ratio_den):
            if not in_flight:
                changed.append(order_cancel(account=order.account, order_id=order.id))
            continue  # in flight: its cancel or replace reaches the engine first; the row keeps its terms
        if order.qty is not None:
            leaves = order.qty - order.filled_qty
            whole = not buy or leaves == leaves.to_integral_value()
            new_leaves = _split_qty(leaves, ratio_num, ratio_den, whole=whole)
            if new_leaves == 0 and not in_flight:
                changed.append(order_cancel(account=order.account, order_id=order.id))
                continue
            if order.filled_qty:
                order.filled_qty = _split_qty(order.filled_qty, ratio_num, ratio_den, whole=False)
                order.filled_avg_price = WIDE.divide(order.filled_value, order.filled_qty).quantize(
                    Decimal("0.0000000001"), context=WIDE
                )
            order.qty = order.filled_qty + new_leaves
        if order.reserved_qty:
            order.reserved_qty = _split_qty(order.reserved_qty, ratio_num, ratio_den, whole=True)
        order.limit_price = _split_price(order.limit_price, tick, ratio_num, ratio_den, up=not buy)
        order.stop_price = _split_price(order.stop_price, tick, ratio_num, ratio_den, up=buy)
        order.trail_price = _split_price(order.trail_price, tick, ratio_num, ratio_den, up=False)
        order.hwm = _split_price(order.hwm, tick, ratio_num, ratio_den, up=False)
        order.updated_at = market_clock().now()
        order.save(
            update_fields=[
                "qty",
                "filled_qty",
                "filled_avg_price",
                "reserved_qty",
                "limit_price",
                "stop_price",
                "trail_price",
                "hwm",
                "updated_at",
            ]
        )
        changed.append(order)
    split_command_record(
        command=ec.SplitApply(
            symbol=symbol,
            split_id=split_id,
            numerator=ratio_num,
            denominator=ratio_den,
            tick_e4=units.price_to_e4(tick),
            split_epoch=epoch,
        )
    )
    return changed


def split_command_record(*, command: ec.SplitApply) -> None:
    """Write ``SplitApply`` to the outbox (``orders.SplitRequested``, key = symbol, aggregate = the split)."""
    event_record(
        topic=COMMANDS_TOPIC,
        key=command.symbol,
        event_type="orders.SplitRequested",
        aggregate_type="corporate_action",
        aggregate_id=command.split_id,
        payload={"command": msgspec.to_builtins(command)},
    )
