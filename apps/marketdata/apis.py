"""Alpaca market-data v2 REST (``StockHistoricalDataClient(url_override=...)`` works), plus ``/orderbook``.

Thin views: parse with an ``InputSerializer``, call a selector, return its Alpaca-shaped dict (decimals are
already strings there). Redis down → PostgreSQL where the data is history (trades, bars), else 503
``marketdata_cache_unavailable`` (code 50310001).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.permissions import HasScope
from apps.core.errors import NotFound, ServiceUnavailable, ValidationError
from apps.core.schema import KeyedBySerializer, decimal_string, error_responses
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


# ----------------------------------------------------------------------------------------- response documentation
# Documentation-only serializers of ``apps.marketdata.shapes`` (``as`` is a keyword, hence type() for quotes).


@extend_schema_serializer(component_name="StockTrade")
class _TradeOutput(serializers.Serializer[Any]):
    t = serializers.DateTimeField()
    x = serializers.CharField()
    p = decimal_string()
    s = decimal_string()
    c = serializers.ListField(child=serializers.CharField())
    i = serializers.IntegerField()
    z = serializers.CharField()
    trade_id = serializers.CharField()
    book_seq = serializers.IntegerField()


_QuoteOutput: type[serializers.Serializer[Any]] = extend_schema_serializer(component_name="StockQuote")(
    type(
        "_QuoteOutput",
        (serializers.Serializer,),
        {
            "t": serializers.DateTimeField(),
            "bx": serializers.CharField(allow_blank=True),
            "bp": decimal_string(),
            "bs": decimal_string(),
            "ax": serializers.CharField(allow_blank=True),
            "ap": decimal_string(),
            "as": decimal_string(),
            "c": serializers.ListField(child=serializers.CharField()),
            "z": serializers.CharField(),
            "book_seq": serializers.IntegerField(),
        },
    )
)


@extend_schema_serializer(component_name="StockBar")
class _BarOutput(serializers.Serializer[Any]):
    t = serializers.DateTimeField()
    o = decimal_string()
    h = decimal_string()
    l = decimal_string()  # noqa: E741 - Alpaca's key
    c = decimal_string()
    v = decimal_string()
    n = serializers.IntegerField()
    vw = decimal_string()


@extend_schema_serializer(component_name="StockSnapshot")
class _SnapshotOutput(serializers.Serializer[Any]):
    latestTrade = _TradeOutput(allow_null=True)  # Alpaca's keys
    latestQuote = _QuoteOutput(allow_null=True)
    minuteBar = _BarOutput(allow_null=True)
    dailyBar = _BarOutput(allow_null=True)
    prevDailyBar = _BarOutput(allow_null=True)


@extend_schema_serializer(component_name="StockSymbolSnapshot")
class _SymbolSnapshotOutput(_SnapshotOutput):
    symbol = serializers.CharField()


@extend_schema_serializer(component_name="OrderbookLevel")
class _LevelOutput(serializers.Serializer[Any]):
    p = decimal_string()
    s = decimal_string()
    n = serializers.IntegerField(help_text="resting orders at the level")


@extend_schema_serializer(component_name="Orderbook")
class _BookOutput(serializers.Serializer[Any]):
    b = _LevelOutput(many=True)
    a = _LevelOutput(many=True)
    book_seq = serializers.IntegerField()
    seq = serializers.IntegerField()


def _doc(
    component: str, fields: dict[str, serializers.Field[Any, Any, Any, Any]]
) -> type[serializers.Serializer[Any]]:
    """A documentation-only response envelope (``{"trades": {...}}`` and the like)."""
    return extend_schema_serializer(component_name=component)(
        type(component, (serializers.Serializer,), fields)
    )


_NOT_FOUND = error_responses(e404="no data for the symbol")
_CACHE_DOWN = error_responses(e503="market data cache unavailable (code 50310001)")
_NEXT_PAGE = serializers.CharField(allow_null=True)


class LatestTradesApi(_Base):
    InputSerializer = _SymbolsInput

    @extend_schema(
        operation_id="stocks_trades_latest",
        parameters=[_SymbolsInput],
        responses={200: _doc("StockLatestTrades", {"trades": serializers.DictField(child=_TradeOutput())})},
    )
    def get(self, request: Request) -> Response:
        symbols = _validated(self.InputSerializer, request.query_params)["symbols"]
        found = {s: selectors.latest_trade(s) for s in symbols}
        return Response({"trades": {s: t for s, t in found.items() if t is not None}})


class LatestTradeApi(_Base):
    @extend_schema(
        operation_id="stocks_symbol_trade_latest",
        responses={
            200: _doc("StockSymbolLatestTrade", {"symbol": serializers.CharField(), "trade": _TradeOutput()}),
            **_NOT_FOUND,
        },
    )
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

    @extend_schema(
        operation_id="stocks_quotes_latest",
        parameters=[_SymbolsInput],
        responses={
            200: _doc("StockLatestQuotes", {"quotes": serializers.DictField(child=_QuoteOutput())}),
            **_CACHE_DOWN,
        },
    )
    def get(self, request: Request) -> Response:
        symbols = _validated(self.InputSerializer, request.query_params)["symbols"]
        return Response({"quotes": _quotes(symbols)})


class LatestQuoteApi(_Base):
    @extend_schema(
        operation_id="stocks_symbol_quote_latest",
        responses={
            200: _doc("StockSymbolLatestQuote", {"symbol": serializers.CharField(), "quote": _QuoteOutput()}),
            **_NOT_FOUND,
            **_CACHE_DOWN,
        },
    )
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

    @extend_schema(
        operation_id="stocks_bars_latest",
        parameters=[_SymbolsInput],
        responses={
            200: _doc("StockLatestBars", {"bars": serializers.DictField(child=_BarOutput())}),
            **_CACHE_DOWN,
        },
    )
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

    @extend_schema(
        operation_id="stocks_bars",
        responses={
            200: _doc(
                "StockBars",
                {
                    "bars": serializers.DictField(child=serializers.ListField(child=_BarOutput())),
                    "next_page_token": _NEXT_PAGE,
                },
            )
        },
    )
    def get(self, request: Request) -> Response:
        params = _validated(self.InputSerializer, request.query_params)
        page = _bars(params["symbols"], params)
        return Response({"bars": page.bars, "next_page_token": page.next_page_token})


class SymbolBarsApi(_Base):
    InputSerializer = _BarsInput

    @extend_schema(
        operation_id="stocks_symbol_bars",
        responses={
            200: _doc(
                "StockSymbolBars",
                {
                    "symbol": serializers.CharField(),
                    "bars": _BarOutput(many=True),
                    "next_page_token": _NEXT_PAGE,
                },
            )
        },
    )
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

    @extend_schema(
        operation_id="stocks_snapshots",
        parameters=[_SymbolsInput],
        responses={
            200: KeyedBySerializer(child=_SnapshotOutput(), component_name="StockSnapshots"),
            **_CACHE_DOWN,
        },
    )
    def get(self, request: Request) -> Response:
        symbols = _validated(self.InputSerializer, request.query_params)["symbols"]
        return Response(_snapshots(symbols))


class SnapshotApi(_Base):
    @extend_schema(
        operation_id="stocks_symbol_snapshot",
        responses={200: _SymbolSnapshotOutput, **_NOT_FOUND, **_CACHE_DOWN},
    )
    def get(self, request: Request, symbol: str) -> Response:
        found = _snapshots([symbol.upper()])
        if not found:
            raise NotFound(f"no market data for {symbol.upper()}")
        return Response({"symbol": symbol.upper(), **found[symbol.upper()]})


class OrderbookApi(_Base):
    class InputSerializer(serializers.Serializer[Any]):
        depth = serializers.IntegerField(min_value=1, max_value=1000, required=False)

    @extend_schema(
        operation_id="stocks_symbol_orderbook",
        responses={
            200: _doc(
                "StockSymbolOrderbook", {"symbol": serializers.CharField(), "orderbook": _BookOutput()}
            ),
            **_CACHE_DOWN,
        },
    )
    def get(self, request: Request, symbol: str) -> Response:
        depth = _validated(self.InputSerializer, request.query_params).get("depth")
        try:
            book = selectors.orderbook(symbol.upper(), depth)
        except RedisUnavailable as exc:
            raise cache_unavailable() from exc
        return Response({"symbol": symbol.upper(), "orderbook": book})
