"""Market data history in PostgreSQL: public trade prints and OHLCV bars.

Invariants:
- ``Trade`` is unique by ``(symbol, trade_id)``; the engine derives ``trade_id`` from its input position, so a
  replayed trade is a no-op insert.
- ``Bar`` is unique by ``(symbol, timeframe, timestamp)`` (bucket start, UTC). A bar is only ever changed by
  adding one newly inserted trade to it, so replays never double-count; ``open``/``close`` are the prices of the
  trades with the lowest/highest ``book_seq`` (``open_seq``/``close_seq``), independent of arrival order.
- ``notional`` is the exact sum of price * size (4 + 9 decimal places); ``vwap`` is derived from it on read.
"""

from __future__ import annotations

from decimal import Decimal, localcontext

from django.db import models
from django.db.models import Q

from apps.core.money import PRICE_DECIMAL_PLACES, PRICE_MAX_DIGITS, QTY_DECIMAL_PLACES, QTY_MAX_DIGITS

# price (4 dp) * quantity (9 dp) summed over a bar: exact needs 13 decimal places and the digits of both.
NOTIONAL_DECIMAL_PLACES = PRICE_DECIMAL_PLACES + QTY_DECIMAL_PLACES
NOTIONAL_MAX_DIGITS = PRICE_MAX_DIGITS + QTY_MAX_DIGITS


class Trade(models.Model):
    symbol = models.CharField(max_length=16)
    trade_id = models.CharField(max_length=64)
    price = models.DecimalField(max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES)
    size = models.DecimalField(max_digits=QTY_MAX_DIGITS, decimal_places=QTY_DECIMAL_PLACES)
    timestamp = models.DateTimeField()
    book_seq = models.BigIntegerField()
    aggressor = models.CharField(max_length=8, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["symbol", "trade_id"], name="marketdata_trade_symbol_trade_id_uniq"
            ),
            models.CheckConstraint(
                condition=Q(price__gt=0) & Q(size__gt=0), name="marketdata_trade_positive"
            ),
        ]
        indexes = [models.Index(fields=["symbol", "timestamp"], name="marketdata_trade_sym_ts_idx")]

    def __str__(self) -> str:
        return f"{self.symbol} {self.trade_id} {self.size}@{self.price}"


class Bar(models.Model):
    class Timeframe(models.TextChoices):
        MIN_1 = "1Min"
        MIN_5 = "5Min"
        MIN_15 = "15Min"
        HOUR_1 = "1Hour"
        DAY_1 = "1Day"

    symbol = models.CharField(max_length=16)
    timeframe = models.CharField(max_length=8, choices=Timeframe.choices)
    timestamp = models.DateTimeField(help_text="bucket start (UTC); 1Day buckets start at New York midnight")
    open = models.DecimalField(max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES)
    high = models.DecimalField(max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES)
    low = models.DecimalField(max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES)
    close = models.DecimalField(max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES)
    volume = models.DecimalField(max_digits=QTY_MAX_DIGITS, decimal_places=QTY_DECIMAL_PLACES)
    trade_count = models.IntegerField()
    notional = models.DecimalField(max_digits=NOTIONAL_MAX_DIGITS, decimal_places=NOTIONAL_DECIMAL_PLACES)
    open_seq = models.BigIntegerField()
    close_seq = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["symbol", "timeframe", "timestamp"], name="marketdata_bar_symbol_tf_ts_uniq"
            ),
            models.CheckConstraint(
                condition=Q(low__lte=models.F("open"))
                & Q(low__lte=models.F("close"))
                & Q(high__gte=models.F("open"))
                & Q(high__gte=models.F("close")),
                name="marketdata_bar_ohlc_consistent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} {self.timeframe} {self.timestamp.isoformat()}"

    @property
    def vwap(self) -> Decimal:
        return vwap(self.notional, self.volume)


def vwap(notional: Decimal, volume: Decimal) -> Decimal:
    """Volume-weighted average price on the 4-decimal price grid (half-even)."""
    if not volume:
        return Decimal(0)
    with localcontext() as ctx:
        ctx.prec = NOTIONAL_MAX_DIGITS + QTY_MAX_DIGITS  # exact quotient before the final rounding
        return (notional / volume).quantize(Decimal(1).scaleb(-PRICE_DECIMAL_PLACES))
