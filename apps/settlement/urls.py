"""URL routes of the settlement app (included by brokerage.urls). Paths exactly as Alpaca's, no trailing slash."""

from django.urls import URLPattern, URLResolver, path

from apps.settlement import apis

urlpatterns: list[URLPattern | URLResolver] = [
    path("v2/account/activities", apis.ActivitiesApi.as_view(), name="account-activities"),
    path("v1/accounts/statements", apis.StatementApi.as_view(), name="account-statements"),
    path(
        "v1/accounts/confirmations/<str:fill_id>", apis.ConfirmationApi.as_view(), name="account-confirmation"
    ),
    path("v2/account/portfolio/history", apis.PortfolioHistoryApi.as_view(), name="portfolio-history"),
    path("v1/account/cost-basis", apis.CostBasisMethodApi.as_view(), name="account-cost-basis"),
    path("v1/positions/<str:symbol>/lots", apis.PositionLotsApi.as_view(), name="position-lots"),
    path(
        "v1/orders/<str:order_id>/lot-selection", apis.LotSelectionApi.as_view(), name="order-lot-selection"
    ),
    path(
        "v2/account/activities/<str:activity_type>",
        apis.ActivitiesApi.as_view(),
        name="account-activities-by-type",
    ),
]
