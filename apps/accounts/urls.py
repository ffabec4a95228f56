"""URL routes of the accounts app (included by brokerage.urls). No trailing slashes (Alpaca's SDK)."""

from django.urls import URLPattern, URLResolver, path

from apps.accounts import apis

urlpatterns: list[URLPattern | URLResolver] = [
    path("v1/auth/csrf", apis.CsrfApi.as_view(), name="auth-csrf"),
    path("v1/auth/register", apis.RegisterApi.as_view(), name="auth-register"),
    path("v1/auth/login", apis.LoginApi.as_view(), name="auth-login"),
    path("v1/auth/logout", apis.LogoutApi.as_view(), name="auth-logout"),
    path("v1/auth/password/reset", apis.PasswordResetApi.as_view(), name="auth-password-reset"),
    path(
        "v1/auth/password/reset/confirm",
        apis.PasswordResetConfirmApi.as_view(),
        name="auth-password-reset-confirm",
    ),
    path("v1/auth/otp/totp", apis.OtpTotpEnrolApi.as_view(), name="auth-otp-totp"),
    path("v1/auth/otp/totp/confirm", apis.OtpTotpConfirmApi.as_view(), name="auth-otp-totp-confirm"),
    path("v1/auth/otp/verify", apis.OtpVerifyApi.as_view(), name="auth-otp-verify"),
    path("v1/auth/otp/static", apis.OtpBackupCodesApi.as_view(), name="auth-otp-static"),
    path("v1/api-keys", apis.ApiKeysApi.as_view(), name="api-keys"),
    path("v1/api-keys/<str:key_id>", apis.ApiKeyRevokeApi.as_view(), name="api-key-detail"),
    path("v2/account", apis.AccountApi.as_view(), name="account"),
]
