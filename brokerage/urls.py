"""Root URL routes. Alpaca's SDK does not follow redirects: no route has a trailing slash."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.core import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("v1/schema", SpectacularAPIView.as_view(), name="schema"),
    path("v1/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("", include("apps.accounts.urls")),
    path("", include("apps.kyc.urls")),
    path("", include("apps.orders.urls")),
    path("", include("apps.settlement.urls")),
    path("", include("apps.marketdata.urls")),
]
