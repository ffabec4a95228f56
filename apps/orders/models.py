"""Trading reference data and order state. Instruments (Alpaca "assets") carry their tick and lot rules."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.db import models
from django.db.models import Q

from apps.core.money import PRICE_DECIMAL_PLACES, PRICE_MAX_DIGITS, QTY_DECIMAL_PLACES, QTY_MAX_DIGITS


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

    class Meta:
        ordering = ["symbol"]
        constraints = [
            models.CheckConstraint(condition=Q(price_increment__gt=0), name="orders_asset_tick_positive"),
            models.CheckConstraint(condition=Q(min_trade_increment__gt=0), name="orders_asset_lot_positive"),
        ]

    def __str__(self) -> str:
        return self.symbol
