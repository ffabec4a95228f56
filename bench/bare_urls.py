"""The platform's routes plus ``POST /bench/bare``: a bare DRF create (one model insert), the REST baseline.

The model is unmanaged (no migration; ``bench/rest.py`` creates its table in the benchmark database) and this
module is imported only by ``bench/wsgi_bench.py``.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.urls import URLPattern, URLResolver, path
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from brokerage.urls import urlpatterns as platform_urlpatterns

BARE_DDL = (
    "CREATE TABLE IF NOT EXISTS bench_bare_order (id bigserial PRIMARY KEY, symbol varchar(16) NOT NULL, "
    "side varchar(4) NOT NULL, qty numeric(30,9) NOT NULL, limit_price numeric(20,4) NOT NULL)"
)


class BareOrder(models.Model):
    symbol = models.CharField(max_length=16)
    side = models.CharField(max_length=4)
    qty = models.DecimalField(max_digits=30, decimal_places=9)
    limit_price = models.DecimalField(max_digits=20, decimal_places=4)

    class Meta:
        app_label = "core"
        managed = False
        db_table = "bench_bare_order"

    def __str__(self) -> str:
        return f"{self.side} {self.qty} {self.symbol}"


class BareOrderSerializer(serializers.ModelSerializer[BareOrder]):
    class Meta:
        model = BareOrder
        fields = ["id", "symbol", "side", "qty", "limit_price"]


class BareCreateApi(APIView):
    """The textbook DRF create: authenticate (the platform's default classes), validate, insert, respond."""

    def post(self, request: Request) -> Response:
        serializer = BareOrderSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response(serializer.data, status=201)


urlpatterns: list[Any | URLPattern | URLResolver] = [
    *platform_urlpatterns,
    path("bench/bare", BareCreateApi.as_view(), name="bench-bare"),
]
