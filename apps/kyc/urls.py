"""URL routes of the kyc app (included by brokerage.urls). No trailing slashes (Alpaca's SDK)."""

from django.urls import URLPattern, URLResolver, path

from apps.kyc import apis

urlpatterns: list[URLPattern | URLResolver] = [
    path("v1/accounts/kyc", apis.KycApi.as_view(), name="kyc"),
    path("v1/transfers", apis.TransfersApi.as_view(), name="transfers"),
    path("v1/transfers/<str:transfer_id>", apis.TransferDetailApi.as_view(), name="transfer-detail"),
]
