"""URL routes of the marketdata app (included by brokerage.urls): Alpaca market-data v2 paths, no trailing slash."""

from django.urls import URLPattern, URLResolver, path

from apps.marketdata import apis

urlpatterns: list[URLPattern | URLResolver] = [
    path("v2/stocks/trades/latest", apis.LatestTradesApi.as_view(), name="md-trades-latest"),
    path("v2/stocks/quotes/latest", apis.LatestQuotesApi.as_view(), name="md-quotes-latest"),
    path("v2/stocks/bars/latest", apis.LatestBarsApi.as_view(), name="md-bars-latest"),
    path("v2/stocks/bars", apis.BarsApi.as_view(), name="md-bars"),
    path("v2/stocks/snapshots", apis.SnapshotsApi.as_view(), name="md-snapshots"),
    path("v2/stocks/<str:symbol>/trades/latest", apis.LatestTradeApi.as_view(), name="md-trade-latest"),
    path("v2/stocks/<str:symbol>/quotes/latest", apis.LatestQuoteApi.as_view(), name="md-quote-latest"),
    path("v2/stocks/<str:symbol>/bars", apis.SymbolBarsApi.as_view(), name="md-symbol-bars"),
    path("v2/stocks/<str:symbol>/snapshot", apis.SnapshotApi.as_view(), name="md-snapshot"),
    path("v2/stocks/<str:symbol>/orderbook", apis.OrderbookApi.as_view(), name="md-orderbook"),
]
