"""Trading reference data and order state. Instruments (Alpaca "assets") carry their tick and lot rules."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.db import models
from django.db.models import Q

from apps.core.money import (
    MONEY_DECIMAL_PLACES,
    MONEY_MAX_DIGITS,
    PRICE_DECIMAL_PLACES,
    PRICE_MAX_DIGITS,
    QTY_DECIMAL_PLACES,
    QTY_MAX_DIGITS,
)


class Asset(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        INACTIVE = "inactive"

    class AssetClass(models.TextChoices):
        US_EQUITY = "us_equity"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    symbol = models.CharField(max_length=16, unique=True)
    name = models.CharField(max_length=200)
    asset_class = models.CharField(max_length=20, choices=AssetClass.choices, default=AssetClass.US_EQUITY)
    exchange = models.CharField(max_length=20, help_text="primary listing exchange (Alpaca's enum)")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    tradable = models.BooleanField(default=True)
    halted = models.BooleanField(default=False)
    marginable = models.BooleanField(default=False)
    shortable = models.BooleanField(default=False)
    easy_to_borrow = models.BooleanField(default=False)
    fractionable = models.BooleanField(default=True)
    price_increment = models.DecimalField(
        max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES, default=Decimal("0.01")
    )
    min_order_size = models.DecimalField(
        max_digits=QTY_MAX_DIGITS, decimal_places=QTY_DECIMAL_PLACES, default=Decimal("0.000000001")
    )
    min_trade_increment = models.DecimalField(
        max_digits=QTY_MAX_DIGITS, decimal_places=QTY_DECIMAL_PLACES, default=Decimal("0.000000001")
    )
    reference_price = models.DecimalField(
        max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES, null=True, blank=True
    )
    # Splits applied to the symbol through orders_adjust_for_split (incremented in the split's transaction,
    # under the row lock). Every order command carries the value its transaction read; the engine rejects a
    # command whose epoch differs from the symbol's (docs/engine.md, "splits").
    split_epoch = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["symbol"]
        constraints = [
            models.CheckConstraint(condition=Q(price_increment__gt=0), name="orders_asset_tick_positive"),
            models.CheckConstraint(condition=Q(min_trade_increment__gt=0), name="orders_asset_lot_positive"),
        ]

    def __str__(self) -> str:
        return self.symbol


# The constraint whose violation means "client_order_id taken" (the submit answers it as a 422).
CLIENT_ORDER_ID_UNIQUE = "orders_order_client_id_uniq"


class Order(models.Model):
    """A customer order, shaped like Alpaca's ``Order``.

    Invariants (enforced by CHECK constraints, not only by the service):
    - exactly one of ``qty`` / ``notional`` is set on a parent order (notional: market orders only);
    - ``0 <= filled_qty <= qty`` when ``qty`` is set; every price and amount is non-negative;
    - ``(account, client_order_id)`` is unique.
    State is written by ``apps.orders.services`` (submission) and the projection of the engine's events
    (``apps.orders.projection``); nothing else mutates an order.
    """

    class Side(models.TextChoices):
        BUY = "buy"
        SELL = "sell"

    class Type(models.TextChoices):
        MARKET = "market"
        LIMIT = "limit"
        STOP = "stop"
        STOP_LIMIT = "stop_limit"
        TRAILING_STOP = "trailing_stop"

    class TimeInForce(models.TextChoices):
        DAY = "day"
        GTC = "gtc"
        IOC = "ioc"
        FOK = "fok"
        OPG = "opg"
        CLS = "cls"

    class OrderClass(models.TextChoices):
        SIMPLE = "simple"
        BRACKET = "bracket"
        OCO = "oco"
        OTO = "oto"

    class Status(models.TextChoices):
        NEW = "new"
        PARTIALLY_FILLED = "partially_filled"
        FILLED = "filled"
        DONE_FOR_DAY = "done_for_day"
        CANCELED = "canceled"
        EXPIRED = "expired"
        REPLACED = "replaced"
        PENDING_CANCEL = "pending_cancel"
        PENDING_REPLACE = "pending_replace"
        ACCEPTED = "accepted"
        PENDING_NEW = "pending_new"
        ACCEPTED_FOR_BIDDING = "accepted_for_bidding"
        STOPPED = "stopped"
        REJECTED = "rejected"
        SUSPENDED = "suspended"
        CALCULATED = "calculated"
        HELD = "held"

    class LegRole(models.TextChoices):
        NONE = ""
        TAKE_PROFIT = "take_profit"
        STOP_LOSS = "stop_loss"

    # Statuses from which no further engine event can move the order.
    TERMINAL = frozenset({"filled", "canceled", "expired", "replaced", "rejected", "done_for_day"})
    OPEN = frozenset(
        {"new", "partially_filled", "pending_cancel", "pending_replace", "accepted", "pending_new", "held"}
    )

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client_order_id = models.CharField(max_length=128)
    # No index of its own: the composite indexes below and the client id constraint all lead with it.
    account = models.ForeignKey(
        "accounts.BrokerageAccount", on_delete=models.PROTECT, related_name="orders", db_index=False
    )
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="orders")
    symbol = models.CharField(max_length=16)
    side = models.CharField(max_length=4, choices=Side.choices)
    type = models.CharField(max_length=16, choices=Type.choices)
    time_in_force = models.CharField(max_length=4, choices=TimeInForce.choices)
    order_class = models.CharField(max_length=8, choices=OrderClass.choices, default=OrderClass.SIMPLE)
    qty = models.DecimalField(max_digits=QTY_MAX_DIGITS, decimal_places=QTY_DECIMAL_PLACES, null=True)
    notional = models.DecimalField(
        max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES, null=True
    )
    filled_qty = models.DecimalField(
        max_digits=QTY_MAX_DIGITS, decimal_places=QTY_DECIMAL_PLACES, default=Decimal(0)
    )
    # Sum of qty*price over fills, exact (1e-13 USD fits); filled_avg_price derives from it.
    filled_value = models.DecimalField(max_digits=40, decimal_places=13, default=Decimal(0))
    filled_avg_price = models.DecimalField(
        max_digits=PRICE_MAX_DIGITS + 6, decimal_places=PRICE_DECIMAL_PLACES + 6, null=True
    )
    limit_price = models.DecimalField(
        max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES, null=True
    )
    stop_price = models.DecimalField(
        max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES, null=True
    )
    trail_price = models.DecimalField(
        max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES, null=True
    )
    trail_percent = models.DecimalField(max_digits=7, decimal_places=2, null=True)
    hwm = models.DecimalField(max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES, null=True)
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.PENDING_NEW)
    replaces = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="replaced_by_order"
    )
    replaced_by = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="replaces_order"
    )
    parent = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="legs")
    leg_role = models.CharField(max_length=12, choices=LegRole.choices, default=LegRole.NONE, blank=True)
    extended_hours = models.BooleanField(default=False)
    # Cash held for a buy (apps.settlement hold, keyed by order id) and shares reserved for a sell.
    reserved_amount = models.DecimalField(
        max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES, default=Decimal(0)
    )
    reserved_qty = models.DecimalField(
        max_digits=QTY_MAX_DIGITS, decimal_places=QTY_DECIMAL_PLACES, default=Decimal(0)
    )
    reject_reason = models.CharField(max_length=64, blank=True, default="")
    cancel_reason = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    submitted_at = models.DateTimeField()
    filled_at = models.DateTimeField(null=True, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    replaced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-submitted_at", "-id"]
        indexes = [
            models.Index(fields=["account", "-submitted_at"], name="orders_order_acct_submitted"),
            models.Index(fields=["account", "status"], name="orders_order_acct_status"),
            # The self-trade check of every submit reads the account's open orders on one symbol and side: led by
            # those three it reads only them, not every open order of the account (a bot with thousands resting).
            models.Index(fields=["account", "symbol", "side", "status"], name="orders_order_acct_sym_side"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["account", "client_order_id"], name=CLIENT_ORDER_ID_UNIQUE),
            models.CheckConstraint(
                condition=Q(qty__isnull=True) | Q(qty__gt=0), name="orders_order_qty_positive"
            ),
            models.CheckConstraint(
                condition=Q(notional__isnull=True) | Q(notional__gt=0), name="orders_order_notional_positive"
            ),
            models.CheckConstraint(
                condition=Q(parent__isnull=False) | ~Q(qty__isnull=True, notional__isnull=True),
                name="orders_order_qty_or_notional",
            ),
            models.CheckConstraint(
                condition=Q(qty__isnull=True) | Q(notional__isnull=True), name="orders_order_not_both"
            ),
            models.CheckConstraint(
                condition=Q(notional__isnull=True) | Q(type="market"), name="orders_order_notional_market"
            ),
            models.CheckConstraint(condition=Q(filled_qty__gte=0), name="orders_order_filled_nonneg"),
            models.CheckConstraint(
                condition=Q(qty__isnull=True) | Q(filled_qty__lte=models.F("qty")),
                name="orders_order_filled_le_qty",
            ),
            models.CheckConstraint(condition=Q(filled_value__gte=0), name="orders_order_filled_value_nonneg"),
            models.CheckConstraint(condition=Q(reserved_amount__gte=0), name="orders_order_reserved_nonneg"),
            models.CheckConstraint(condition=Q(reserved_qty__gte=0), name="orders_order_reserved_qty_nonneg"),
            models.CheckConstraint(
                condition=(
                    (Q(limit_price__isnull=True) | Q(limit_price__gt=0))
                    & (Q(stop_price__isnull=True) | Q(stop_price__gt=0))
                    & (Q(trail_price__isnull=True) | Q(trail_price__gt=0))
                    & (Q(trail_percent__isnull=True) | Q(trail_percent__gt=0))
                ),
                name="orders_order_prices_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.symbol} {self.id}"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN


class Fill(models.Model):
    """One execution of one order, from an engine ``OrderFilled`` event. ``fill_id`` makes it idempotent."""

    class Liquidity(models.TextChoices):
        MAKER = "maker"
        TAKER = "taker"
        AUCTION = "auction"

    id = models.BigAutoField(primary_key=True)
    fill_id = models.CharField(max_length=64)  # unique: the constraint below (no LIKE index beside it)
    trade_id = models.CharField(max_length=64)
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="fills")
    account = models.ForeignKey("accounts.BrokerageAccount", on_delete=models.PROTECT, related_name="fills")
    symbol = models.CharField(max_length=16)
    side = models.CharField(max_length=4, choices=Order.Side.choices)
    qty = models.DecimalField(max_digits=QTY_MAX_DIGITS, decimal_places=QTY_DECIMAL_PLACES)
    price = models.DecimalField(max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES)
    liquidity = models.CharField(max_length=8, choices=Liquidity.choices)
    filled_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["fill_id"], name="orders_fill_fill_id_uniq"),
            models.CheckConstraint(condition=Q(qty__gt=0), name="orders_fill_qty_positive"),
            models.CheckConstraint(condition=Q(price__gt=0), name="orders_fill_price_positive"),
        ]

    def __str__(self) -> str:
        return self.fill_id


class TradeUpdate(models.Model):
    """The per-account ``trade_updates`` stream, persisted: ``seq`` is gap-free per account.

    The WebSocket push is at-most-once (channels-redis); a client that sees a gap in ``seq`` resyncs over REST.
    """

    id = models.BigAutoField(primary_key=True)
    # No index of its own: ``orders_tradeupdate_seq_uniq`` (account, seq) leads with it.
    account = models.ForeignKey(
        "accounts.BrokerageAccount", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    seq = models.BigIntegerField()
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="+")
    event = models.CharField(max_length=24)
    # Identity of the engine event that caused it, so a replayed engine event adds no second update.
    source_id = models.CharField(max_length=128)
    data = models.JSONField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["account", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["account", "seq"], name="orders_tradeupdate_seq_uniq"),
            models.UniqueConstraint(fields=["source_id"], name="orders_tradeupdate_source_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id}#{self.seq} {self.event}"
