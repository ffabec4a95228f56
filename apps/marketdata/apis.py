"""Alpaca market-data v2 REST (``StockHistoricalDataClient(url_override=...)`` works), plus ``/orderbook``.

Thin views: parse with an ``InputSerializer``, call a selector, return its Alpaca-shaped dict (decimals are
already strings there). Redis down → PostgreSQL where the data is history (trades, bars), else 503
``marketdata_cache_unavailable`` (code 50310001).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from django.conf import settings
from rest_framework import serializers
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.permissions import HasScope
from apps.core.errors import NotFound, ServiceUnavailable, ValidationError
from apps.marketdata import selectors, shapes
from apps.marketdata.cache import RedisUnavailable

MAX_LIMIT = 10_000
MAX_SYMBOLS = 200


def cache_unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "Market data cache is unavailable; latest quotes and books cannot be served right now.",
        error="marketdata_cache_unavailable",
        code=50310001,
    )


class RfcDateTimeField(serializers.Field[datetime, str, str, Any]):
    """RFC 3339 instant, or ``YYYY-MM-DD`` read as UTC midnight (as Alpaca does)."""

    def to_internal_value(self, data: Any) -> datetime:
        text = str(data).strip().replace(" ", "+")  # an unencoded '+' in a query string arrives as ' '
        try:
            if len(text) == 10:
                return datetime.combine(date.fromisoformat(text), time(0), tzinfo=UTC)
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise serializers.ValidationError("must be RFC 3339 or YYYY-MM-DD") from exc
        if parsed.tzinfo is None:
            raise serializers.ValidationError("must include a UTC offset")
        return parsed.astimezone(UTC)

    def to_representation(self, value: datetime) -> str:
        return shapes.rfc3339(value)


class SymbolsField(serializers.CharField):
    def to_internal_value(self, data: Any) -> list[str]:  # type: ignore[override]
        text = super().to_internal_value(data)
        symbols = sorted({s.strip().upper() for s in text.split(",") if s.strip()})
        if not symbols or len(symbols) > MAX_SYMBOLS:
            raise serializers.ValidationError(f"between 1 and {MAX_SYMBOLS} symbols")
        return symbols


class MarketDataPermission(BasePermission):
    """Callers with the ``read`` scope (sessions have every scope); ``MARKETDATA_REST_PUBLIC`` opens market data
    to anyone (demo deployments)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if getattr(settings, "MARKETDATA_REST_PUBLIC", False):
            return AllowAny().has_permission(request, view)
        return IsAuthenticated().has_permission(request, view) and HasScope("read")().has_permission(
            request, view
        )


def _validated(serializer_class: type[serializers.Serializer[Any]], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class _Base(APIView):
    permission_classes = [MarketDataPermission]


class _SymbolsInput(serializers.Serializer[Any]):
    symbols = SymbolsField()


class LatestTradesApi(_Base):
    InputSerializer = _SymbolsInput

    def get(self, request: Request) -> Response:
        symbols = _validated(self.InputSerializer, request.query_params)["symbols"]
        found = {s: selectors.latest_trade(s) for s in symbols}
        return Response({"trades": {s: t for s, t in found.items() if t is not None}})


class LatestTradeApi(_Base):
    def get(self, request: Request, symbol: str) -> Response:
        trade = selectors.latest_trade(symbol.upper())
        if trade is None:
            raise NotFound(f"no trade for {symbol.upper()}")
        return Response({"symbol": symbol.upper(), "trade": trade})


def _quotes(symbols: list[str]) -> dict[str, dict[str, Any]]:
    try:
        found = {s: selectors.latest_quote(s) for s in symbols}
    except RedisUnavailable as exc:
        raise cache_unavailable() from exc
    return {s: q for s, q in found.items() if q is not None}


class LatestQuotesApi(_Base):
    InputSerializer = _SymbolsInput

    def get(self, request: Request) -> Response:
        symbols = _validated(self.InputSerializer, request.query_params)["symbols"]
        return Response({"quotes": _quotes(symbols)})


class LatestQuoteApi(_Base):
    def get(self, request: Request, symbol: str) -> Response:
        quotes = _quotes([symbol.upper()])
        if not quotes:
            raise NotFound(f"no quote for {symbol.upper()}")
        return Response({"symbol": symbol.upper(), "quote": quotes[symbol.upper()]})


def _latest_bars(symbols: list[str]) -> dict[str, dict[str, Any]]:
    try:
        found = {s: selectors.latest_bar(s) for s in symbols}
    except RedisUnavailable as exc:
        raise cache_unavailable() from exc
    return {s: b for s, b in found.items() if b is not None}


class LatestBarsApi(_Base):
    InputSerializer = _SymbolsInput

    def get(self, request: Request) -> Response:
        symbols = _validated(self.InputSerializer, request.query_params)["symbols"]
        return Response({"bars": _latest_bars(symbols)})


class _BarsInput(serializers.Serializer[Any]):
    timeframe = serializers.CharField()
    start = RfcDateTimeField(required=False)
    end = RfcDateTimeField(required=False)
    limit = serializers.IntegerField(min_value=1, max_value=MAX_LIMIT, default=1000)
    page_token = serializers.CharField(required=False, allow_blank=True)
    sort = serializers.ChoiceField(choices=["asc", "desc"], default="asc")

    def validate_timeframe(self, value: str) -> str:
        value = shapes.TIMEFRAME_ALIASES.get(value, value)
        if value not in shapes.TIMEFRAMES:
            raise serializers.ValidationError(f"one of {', '.join(shapes.TIMEFRAMES)}")
        return value


class _MultiBarsInput(_BarsInput):
    symbols = SymbolsField()


def _bars(symbols: list[str], params: dict[str, Any]) -> selectors.BarsPage:
    try:
        return selectors.bars_page(
            symbols=symbols,
            timeframe=params["timeframe"],
            start=params.get("start"),
            end=params.get("end"),
            limit=params["limit"],
            page_token=params.get("page_token") or None,
            descending=params["sort"] == "desc",
        )
    except ValueError as exc:
        raise ValidationError(str(exc), field="page_token") from exc


class BarsApi(_Base):
    InputSerializer = _MultiBarsInput

    def get(self, request: Request) -> Response:
        params = _validated(self.InputSerializer, request.query_params)
        page = _bars(params["symbols"], params)
        return Response({"bars": page.bars, "next_page_token": page.next_page_token})


class SymbolBarsApi(_Base):
    InputSerializer = _BarsInput

    def get(self, request: Request, symbol: str) -> Response:
        params = _validated(self.InputSerializer, request.query_params)
        page = _bars([symbol.upper()], params)
        return Response(
            {
                "symbol": symbol.upper(),
                "bars": page.bars.get(symbol.upper(), []),
                "next_page_token": page.next_page_token,
            }
        )


def _snapshots(symbols: list[str]) -> dict[str, dict[str, Any]]:
    try:
        found = {s: selectors.snapshot(s) for s in symbols}
    except RedisUnavailable as exc:
        raise cache_unavailable() from exc
    return {s: snap for s, snap in found.items() if snap is not None}


class SnapshotsApi(_Base):
    InputSerializer = _SymbolsInput

    def get(self, request: Request) -> Response:
        symbols = _validated(self.InputSerializer, request.query_params)["symbols"]
        return Response(_snapshots(symbols))


class SnapshotApi(_Base):
    def get(self, request: Request, symbol: str) -> Response:
        found = _snapshots([symbol.upper()])
        if not found:
            raise NotFound(f"no market data for {symbol.upper()}")
        return Response({"symbol": symbol.upper(), **found[symbol.upper()]})


class OrderbookApi(_Base):
    class InputSerializer(serializers.Serializer[Any]):
        depth = serializers.IntegerField(min_value=1, max_value=1000, required=False)

    def get(self, request: Request, symbol: str) -> Response:
        depth = _validated(self.InputSerializer, request.query_params).get("depth")
        try:
            book = selectors.orderbook(symbol.upper(), depth)
        except RedisUnavailable as exc:
            raise cache_unavailable() from exc
        return Response({"symbol": symbol.upper(), "orderbook": book})
