"""HTTP API of the accounts app: sign-up, session login/logout, password reset, OTP, API keys, ``GET /v2/account``.

Thin views: parse with an ``InputSerializer``, call a service or selector, render with an ``OutputSerializer``.
Idempotency: mutating business endpoints go through ``idempotent_execute``. Deliberate exceptions, because the
stored response would hold a secret or replaying it would be wrong: login/logout (session state), OTP
verification (a verified code must never be "replayed"), API-key creation and backup codes (secrets shown once).
CSRF: DRF's SessionAuthentication enforces it for session-authenticated unsafe requests; login and register
enforce it explicitly (login CSRF), except for clients that carry no cookies (the test client opts out).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from django.contrib.auth import login as django_login
from django.contrib.auth import logout as django_logout
from django.db import transaction
from django.middleware.csrf import get_token
from django.utils import timezone
from django_otp import devices_for_user, user_has_device
from django_otp import login as otp_login
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts import bruteforce, selectors, services
from apps.accounts.audit import audit_record, client_ip
from apps.accounts.models import ApiKey, BrokerageAccount
from apps.accounts.permissions import HasScope, OtpVerifiedIfEnrolled
from apps.core.errors import AuthenticationFailed, PermissionDenied, ValidationError
from apps.core.fields import StrictDecimalField
from apps.core.idempotency import idempotent_execute, owner_of
from apps.core.money import MONEY_DECIMAL_PLACES
from apps.core.schema import NO_CONTENT, error_responses

INVALID_LOGIN = "Invalid email or password."


@extend_schema_serializer(component_name="OtpBackupCodes")
class _BackupCodesOutput(serializers.Serializer[Any]):
    """Documentation only: the codes are shown in this answer and never again."""

    backup_codes = serializers.ListField(child=serializers.CharField())


def _enforce_csrf(request: Request) -> None:
    SessionAuthentication().enforce_csrf(request)


def _ip(request: Request) -> str | None:
    return client_ip(request) or None


# --- Sign-up, login, logout -----------------------------------------------------------------------------


class CsrfApi(APIView):
    """GET /v1/auth/csrf: sets the CSRF cookie and returns the token for browser clients."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="auth_csrf",
        responses={200: inline_serializer("CsrfToken", fields={"csrf_token": serializers.CharField()})},
    )
    def get(self, request: Request) -> Response:
        return Response({"csrf_token": get_token(request._request)})


class RegisterApi(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema_serializer(component_name="Register")
    class InputSerializer(serializers.Serializer[Any]):
        email = serializers.EmailField(max_length=254)
        password = serializers.CharField(max_length=128, trim_whitespace=False)

    @extend_schema(
        operation_id="auth_register",
        request=InputSerializer,
        responses={
            201: OpenApiResponse(
                inline_serializer("Registered", fields={"email": serializers.EmailField()}),
                description="the same answer whether or not the email was already registered",
            )
        },
    )
    def post(self, request: Request) -> Response:
        _enforce_csrf(request)
        ip = _ip(request)
        bruteforce.drf_attempt_check(path=bruteforce.PATH_REGISTER, account=None, ip=ip)
        # Every sign-up counts towards the per-IP limit (mass account creation), successful or not.
        bruteforce.attempt_failed(path=bruteforce.PATH_REGISTER, account=None, ip=ip)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)

        def operation() -> Response:
            services.user_register(
                email=data.validated_data["email"], password=data.validated_data["password"], request=request
            )
            # The same answer whether or not the email was new: sign-up must not reveal who has an account.
            return Response({"email": data.validated_data["email"]}, status=201)

        return idempotent_execute(request, operation, owner=f"anonymous:{ip or ''}")


class LoginApi(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema_serializer(component_name="Login")
    class InputSerializer(serializers.Serializer[Any]):
        email = serializers.CharField(max_length=254)
        password = serializers.CharField(max_length=128, trim_whitespace=False)

    @extend_schema_serializer(component_name="LoggedIn")
    class OutputSerializer(serializers.Serializer[Any]):
        id = serializers.UUIDField()
        email = serializers.EmailField()
        otp_required = serializers.BooleanField()

    @extend_schema(operation_id="auth_login", request=InputSerializer, responses={200: OutputSerializer})
    def post(self, request: Request) -> Response:
        _enforce_csrf(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        email = data.validated_data["email"]
        bruteforce.drf_attempt_check(path=bruteforce.PATH_PASSWORD, account=email, ip=_ip(request))
        user = authenticate(request._request, username=email, password=data.validated_data["password"])
        if user is None:
            raise AuthenticationFailed(INVALID_LOGIN)
        django_login(request._request, user)
        audit_record(
            actor=user, action="user.logged_in", target=user, before=None, after=None, request=request
        )
        body = {"id": user.pk, "email": user.email, "otp_required": user_has_device(user, confirmed=True)}
        return Response(self.OutputSerializer(body).data)


class LogoutApi(APIView):
    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="auth_logout", request=None, responses={204: NO_CONTENT})
    def post(self, request: Request) -> Response:
        user: Any = request.user
        django_logout(request._request)
        audit_record(
            actor=user, action="user.logged_out", target=user, before=None, after=None, request=request
        )
        return Response(status=204)


class PasswordResetApi(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema_serializer(component_name="PasswordReset")
    class InputSerializer(serializers.Serializer[Any]):
        email = serializers.EmailField(max_length=254)

    @extend_schema(
        operation_id="auth_password_reset",
        request=InputSerializer,
        responses={
            202: OpenApiResponse(
                inline_serializer("PasswordResetAccepted", fields={"detail": serializers.CharField()}),
                description="the same answer whether or not the email is registered",
            )
        },
    )
    def post(self, request: Request) -> Response:
        _enforce_csrf(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        email = data.validated_data["email"]
        ip = _ip(request)
        bruteforce.drf_attempt_check(path=bruteforce.PATH_RESET, account=email, ip=ip)
        bruteforce.attempt_failed(
            path=bruteforce.PATH_RESET, account=email, ip=ip
        )  # limits reset mail volume
        services.password_reset_request(email=email, request=request)
        return Response({"detail": "If the email is registered, a reset link has been sent."}, status=202)


class PasswordResetConfirmApi(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema_serializer(component_name="PasswordResetConfirm")
    class InputSerializer(serializers.Serializer[Any]):
        uid = serializers.CharField(max_length=64)
        token = serializers.CharField(max_length=128)
        new_password = serializers.CharField(max_length=128, trim_whitespace=False)

    @extend_schema(
        operation_id="auth_password_reset_confirm", request=InputSerializer, responses={204: NO_CONTENT}
    )
    def post(self, request: Request) -> Response:
        _enforce_csrf(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        uid = data.validated_data["uid"]
        ip = _ip(request)
        bruteforce.drf_attempt_check(path=bruteforce.PATH_RESET, account=f"uid:{uid}", ip=ip)
        try:
            services.password_reset_confirm(
                uid=uid,
                token=data.validated_data["token"],
                new_password=data.validated_data["new_password"],
                request=request,
            )
        except Exception:
            bruteforce.attempt_failed(path=bruteforce.PATH_RESET, account=f"uid:{uid}", ip=ip)
            raise
        return Response(status=204)


# --- Second factor -----------------------------------------------------------------------------------------


class OtpTotpEnrolApi(APIView):
    """POST /v1/auth/otp/totp: a new unconfirmed TOTP device; returns its provisioning URI."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated, OtpVerifiedIfEnrolled]

    @extend_schema(
        operation_id="auth_otp_totp_enrol",
        request=None,
        responses={
            201: inline_serializer("OtpTotpEnrolment", fields={"provisioning_uri": serializers.CharField()})
        },
    )
    def post(self, request: Request) -> Response:
        device = services.otp_totp_enrol(user=request.user, request=request)  # type: ignore[arg-type]
        return Response({"provisioning_uri": device.config_url}, status=201)


@extend_schema_serializer(component_name="OtpToken")
class _OtpTokenInput(serializers.Serializer[Any]):
    token = serializers.CharField(max_length=16)


def _otp_failed(request: Request) -> ValidationError:
    bruteforce.attempt_failed(path=bruteforce.PATH_OTP, account=str(request.user.pk), ip=_ip(request))
    return ValidationError("Invalid or already used code.", field="token", error="invalid_otp_token")


def _otp_match(user: Any, token: str) -> Device | None:
    """Try the token only on devices of its kind (digits: TOTP; otherwise a backup code).

    Trying every device would count a failure, and so a throttle step, on devices the user never meant.
    """
    kind: type[Device] = TOTPDevice if token.isdigit() else StaticDevice
    with transaction.atomic():
        for device in devices_for_user(user, for_verify=True):
            if isinstance(device, kind) and device.verify_token(token):
                return device
    return None


class OtpTotpConfirmApi(APIView):
    """POST /v1/auth/otp/totp/confirm {token}: confirms the device, verifies the session, returns backup codes."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated, OtpVerifiedIfEnrolled]

    @extend_schema(
        operation_id="auth_otp_totp_confirm", request=_OtpTokenInput, responses={200: _BackupCodesOutput}
    )
    def post(self, request: Request) -> Response:
        data = _OtpTokenInput(data=request.data)
        data.is_valid(raise_exception=True)
        bruteforce.drf_attempt_check(path=bruteforce.PATH_OTP, account=str(request.user.pk), ip=_ip(request))
        device = TOTPDevice.objects.filter(user_id=request.user.pk, confirmed=False).order_by("-pk").first()
        # verify_token commits its own throttle counter and last_t (it runs outside any transaction here).
        if device is None or not device.verify_token(data.validated_data["token"]):
            raise _otp_failed(request)
        codes = services.otp_totp_confirm(user=request.user, device=device, request=request)  # type: ignore[arg-type]
        otp_login(request._request, device)
        bruteforce.attempt_succeeded(path=bruteforce.PATH_OTP, account=str(request.user.pk))
        return Response({"backup_codes": codes})


class OtpVerifyApi(APIView):
    """POST /v1/auth/otp/verify {token}: a TOTP code or a backup code verifies the session."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="auth_otp_verify",
        request=_OtpTokenInput,
        responses={200: inline_serializer("OtpVerified", fields={"verified": serializers.BooleanField()})},
    )
    def post(self, request: Request) -> Response:
        data = _OtpTokenInput(data=request.data)
        data.is_valid(raise_exception=True)
        bruteforce.drf_attempt_check(path=bruteforce.PATH_OTP, account=str(request.user.pk), ip=_ip(request))
        device = _otp_match(request.user, data.validated_data["token"])
        if device is None:
            raise _otp_failed(request)
        otp_login(request._request, device)
        bruteforce.attempt_succeeded(path=bruteforce.PATH_OTP, account=str(request.user.pk))
        audit_record(
            actor=request.user,
            action="otp.verified",
            target=device,
            before=None,
            after={"device": device.persistent_id},
            request=request,
        )
        return Response({"verified": True})


class OtpBackupCodesApi(APIView):
    """POST /v1/auth/otp/static: replaces the backup codes (needs a verified session)."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="auth_otp_backup_codes", request=None, responses={200: _BackupCodesOutput})
    def post(self, request: Request) -> Response:
        is_verified = getattr(request.user, "is_verified", None)
        if is_verified is None or not is_verified():
            raise PermissionDenied("Verify a second factor first.", error="otp_required")
        codes = services.otp_backup_codes_regenerate(user=request.user, request=request)  # type: ignore[arg-type]
        return Response({"backup_codes": codes})


# --- API keys -------------------------------------------------------------------------------------------------


@extend_schema_serializer(component_name="ApiKey")
class ApiKeyOutput(serializers.Serializer[Any]):
    key_id = serializers.CharField()
    name = serializers.CharField()
    scopes = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)


@extend_schema_serializer(component_name="ApiKeyCreated")
class _ApiKeyCreatedOutput(ApiKeyOutput):
    """Documentation only: ``ApiKeyOutput`` plus the secret, in the creation answer and never again."""

    secret = serializers.CharField()


class ApiKeysApi(APIView):
    """GET /v1/api-keys (list, read scope) and POST /v1/api-keys (create; the secret is in this answer only)."""

    @extend_schema_serializer(component_name="ApiKeyCreate")
    class InputSerializer(serializers.Serializer[Any]):
        name = serializers.CharField(max_length=100)
        scopes = serializers.ListField(
            child=serializers.ChoiceField(choices=ApiKey.Scope.values), min_length=1, max_length=3
        )
        expires_at = serializers.DateTimeField(required=False, allow_null=True)

    def get_permissions(self) -> list[Any]:
        return [HasScope("read")()]

    @extend_schema(operation_id="api_keys_list", responses={200: ApiKeyOutput(many=True)})
    def get(self, request: Request) -> Response:
        keys = selectors.api_keys_of(request.user)
        return Response(ApiKeyOutput(keys, many=True).data)

    @extend_schema(
        operation_id="api_keys_create", request=InputSerializer, responses={201: _ApiKeyCreatedOutput}
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        scopes = set(data.validated_data["scopes"])
        if isinstance(request.auth, ApiKey) and not scopes <= set(request.auth.scopes):
            # A key can only mint keys with no more power than itself.
            raise PermissionDenied("A new key cannot have scopes the calling key lacks.", field="scopes")
        key, secret = services.api_key_create(
            owner=request.user,  # type: ignore[arg-type]
            name=data.validated_data["name"],
            scopes=scopes,
            expires_at=data.validated_data.get("expires_at"),
            request=request,
        )
        return Response({**ApiKeyOutput(key).data, "secret": secret}, status=201)


class ApiKeyRevokeApi(APIView):
    """DELETE /v1/api-keys/{key_id}: revoke one of the caller's keys; anyone else's id is a 404."""

    permission_classes = [HasScope("read")]

    @extend_schema(
        operation_id="api_keys_revoke",
        responses={204: NO_CONTENT, **error_responses(e404="no such key of the caller")},
    )
    def delete(self, request: Request, key_id: str) -> Response:
        def operation() -> Response:
            key = selectors.api_key_of(request.user, key_id)
            services.api_key_revoke(key=key, actor=request.user, request=request)
            return Response(status=204)

        return idempotent_execute(request, operation, owner=owner_of(request))


# --- Alpaca /v2/account -------------------------------------------------------------------------------------


def _money() -> StrictDecimalField:
    return StrictDecimalField(decimal_places=MONEY_DECIMAL_PLACES)


class AccountApi(APIView):
    """GET /v2/account in Alpaca's Account shape (decimals as strings)."""

    permission_classes = [HasScope("read")]

    @extend_schema_serializer(component_name="Account")
    class OutputSerializer(serializers.Serializer[Any]):
        id = serializers.UUIDField()
        account_number = serializers.CharField()
        status = serializers.CharField()
        crypto_status = serializers.CharField()
        currency = serializers.CharField()
        cash = _money()
        buying_power = _money()
        regt_buying_power = _money()
        daytrading_buying_power = _money()
        non_marginable_buying_power = _money()
        options_buying_power = _money()
        equity = _money()
        last_equity = _money()
        portfolio_value = _money()
        long_market_value = _money()
        short_market_value = _money()
        initial_margin = _money()
        maintenance_margin = _money()
        last_maintenance_margin = _money()
        sma = _money()
        multiplier = serializers.CharField()
        accrued_fees = _money()
        pending_transfer_in = _money()
        pending_transfer_out = _money()
        daytrade_count = serializers.IntegerField()
        pattern_day_trader = serializers.BooleanField()
        trading_blocked = serializers.BooleanField()
        transfers_blocked = serializers.BooleanField()
        account_blocked = serializers.BooleanField()
        trade_suspended_by_user = serializers.BooleanField()
        shorting_enabled = serializers.BooleanField()
        options_approved_level = serializers.IntegerField()
        options_trading_level = serializers.IntegerField()
        created_at = serializers.DateTimeField()
        balance_asof = serializers.CharField()

    @extend_schema(operation_id="account_get", responses={200: OutputSerializer})
    def get(self, request: Request) -> Response:
        account = selectors.account_for_user(request.user)
        return Response(self.OutputSerializer(_account_body(account)).data)


def _account_body(account: BrokerageAccount) -> dict[str, Any]:
    summary = selectors.account_summary(account)
    zero = selectors.ZERO
    return {
        "id": account.pk,
        "account_number": account.account_number,
        "status": account.status,
        "crypto_status": "INACTIVE",
        "currency": account.currency,
        "cash": summary.cash,
        "buying_power": summary.buying_power,
        "regt_buying_power": summary.buying_power,
        "daytrading_buying_power": zero,
        "non_marginable_buying_power": summary.buying_power,
        "options_buying_power": zero,
        "equity": summary.equity,
        "last_equity": summary.equity,
        "portfolio_value": summary.equity,
        "long_market_value": summary.long_market_value,
        "short_market_value": summary.short_market_value,
        "initial_margin": zero,
        "maintenance_margin": zero,
        "last_maintenance_margin": zero,
        "sma": zero,
        "multiplier": "1",
        "accrued_fees": zero,
        "pending_transfer_in": zero,
        "pending_transfer_out": zero,
        "daytrade_count": 0,
        "pattern_day_trader": account.pattern_day_trader,
        "trading_blocked": account.trading_blocked
        or account.account_blocked
        or bool(account.trading_halted_reason),
        "transfers_blocked": account.transfers_blocked or account.account_blocked,
        "account_blocked": account.account_blocked,
        "trade_suspended_by_user": False,
        "shorting_enabled": False,
        "options_approved_level": 0,
        "options_trading_level": 0,
        "created_at": account.created_at,
        "balance_asof": timezone.localdate(timezone=_new_york()).isoformat(),
    }


def _new_york() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo("America/New_York")
