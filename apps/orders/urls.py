"""URL routes of the orders app (included by brokerage.urls). Paths exactly as Alpaca's, no trailing slash."""

from django.urls import URLPattern, URLResolver, path

from apps.orders import apis, apis_batch

urlpatterns: list[URLPattern | URLResolver] = [
    path("v2/orders", apis.OrdersApi.as_view(), name="orders"),
    path("v2/orders/batch", apis_batch.OrdersBatchApi.as_view(), name="orders-batch"),  # before <order_id>
    path("v2/orders:by_client_order_id", apis.OrderByClientIdApi.as_view(), name="order-by-client-id"),
    path("v2/orders/<str:order_id>", apis.OrderDetailApi.as_view(), name="order-detail"),
    path("v2/positions", apis.PositionsApi.as_view(), name="positions"),
    path("v2/positions/<str:symbol>", apis.PositionDetailApi.as_view(), name="position-detail"),
    path("v2/assets", apis.AssetListApi.as_view(), name="assets"),
    path("v2/assets/<str:symbol>", apis.AssetDetailApi.as_view(), name="asset-detail"),
    path("v2/clock", apis.ClockApi.as_view(), name="clock"),
    path("v2/calendar", apis.CalendarApi.as_view(), name="calendar"),
]
