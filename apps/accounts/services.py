"""Writes of the accounts app: registration, brokerage accounts, API keys, password reset and OTP enrolment.

Every state change is audited (``apps.accounts.audit.audit_record``) in the same transaction; account changes
also record an event on ``accounts.events`` (key = account id). Services use plain ``transaction.atomic()`` and
join the caller's transaction; the API layer opens the durable one.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.encoding import force_bytes, force_str
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.accounts import apikeys
from apps.accounts.audit import audit_record, model_snapshot
from apps.accounts.models import ApiKey, BrokerageAccount, User
from apps.core.errors import BusinessRuleViolation, Conflict, ValidationError
from apps.core.outbox import event_record

ACCOUNT_TOPIC = "accounts.events"
ACCOUNT_NUMBER_ALPHABET = string.ascii_uppercase + string.digits
BACKUP_CODE_COUNT = 10

Status = BrokerageAccount.Status
# Allowed status changes. ACCOUNT_CLOSED is terminal and nothing returns to ONBOARDING.
_ALL = set(Status)
STATUS_TRANSITIONS: dict[str, set[Status]] = {
    Status.ONBOARDING: _ALL - {Status.ONBOARDING},
    Status.SUBMITTED: _ALL - {Status.ONBOARDING, Status.SUBMITTED},
    Status.ACTION_REQUIRED: _ALL - {Status.ONBOARDING, Status.ACTION_REQUIRED},
    Status.APPROVAL_PENDING: _ALL - {Status.ONBOARDING, Status.APPROVAL_PENDING},
    Status.APPROVED: {Status.ACTIVE, Status.ACTION_REQUIRED, Status.DISABLED, Status.ACCOUNT_CLOSED},
    Status.ACTIVE: {Status.ACTION_REQUIRED, Status.DISABLED, Status.ACCOUNT_CLOSED},
    Status.REJECTED: {Status.SUBMITTED, Status.DISABLED, Status.ACCOUNT_CLOSED},
    Status.DISABLED: {Status.ACTIVE, Status.ACTION_REQUIRED, Status.APPROVAL_PENDING, Status.ACCOUNT_CLOSED},
    Status.ACCOUNT_CLOSED: set(),
}
ACCOUNT_AUDIT_FIELDS = [
    "status",
    "trading_blocked",
    "transfers_blocked",
    "account_blocked",
    "trading_halted_reason",
]


# --- Brokerage accounts ------------------------------------------------------------------------------


def _account_number() -> str:
    # Alpaca-like: "PA" + 10 characters; collisions are retried by account_open.
    return "PA" + "".join(secrets.choice(ACCOUNT_NUMBER_ALPHABET) for _ in range(10))


def _account_event(account: BrokerageAccount, event_type: str, payload: dict[str, Any]) -> None:
    event_record(
        topic=ACCOUNT_TOPIC,
        key=str(account.pk),
        event_type=event_type,
        aggregate_type="brokerage_account",
        aggregate_id=str(account.pk),
        payload={"account_id": str(account.pk), "account_number": account.account_number, **payload},
    )


def account_open(*, user: User, actor: Any = None, request: Any = None) -> BrokerageAccount:
    """Open the user's brokerage account (status ONBOARDING) with a unique account number."""
    for _ in range(5):
        try:
            with transaction.atomic():
                account = BrokerageAccount.objects.create(owner=user, account_number=_account_number())
                _account_event(account, "AccountOpened", {"status": account.status})
                audit_record(
                    actor=actor if actor is not None else user,
                    action="account.opened",
                    target=account,
                    before=None,
                    after=model_snapshot(account, ["account_number", "owner", *ACCOUNT_AUDIT_FIELDS]),
                    request=request,
                )
                return account
        except IntegrityError:
            if BrokerageAccount.objects.filter(owner=user).exists():
                raise Conflict("The user already has a brokerage account.", error="account_exists") from None
    raise Conflict("Could not allocate an account number.", error="account_number_unavailable")


def _locked(account: BrokerageAccount) -> BrokerageAccount:
    return BrokerageAccount.objects.select_for_update().get(pk=account.pk)


def _account_change(
    *,
    account: BrokerageAccount,
    changes: dict[str, Any],
    action: str,
    event_type: str,
    actor: Any,
    reason: str,
    request: Any,
) -> BrokerageAccount:
    with transaction.atomic():
        locked = _locked(account)
        before = model_snapshot(locked, ACCOUNT_AUDIT_FIELDS)
        changed = {name: value for name, value in changes.items() if getattr(locked, name) != value}
        if not changed:
            return locked
        for name, value in changed.items():
            setattr(locked, name, value)
        locked.save(update_fields=[*changed, "updated_at"])
        after = model_snapshot(locked, ACCOUNT_AUDIT_FIELDS)
        _account_event(locked, event_type, {"before": before, "after": after, "reason": reason})
        audit_record(
            actor=actor,
            action=action,
            target=locked,
            before=before,
            after={**after, "reason": reason} if reason else after,
            request=request,
        )
        return locked


def account_status_set(
    *,
    account: BrokerageAccount,
    status: str,
    actor: Any,
    reason: str = "",
    request: Any = None,
) -> BrokerageAccount:
    """Move the account to ``status`` (audited, event ``AccountStatusChanged``); a no-op if already there.

    Raises ``Conflict`` (error ``invalid_status_transition``) for a change ``STATUS_TRANSITIONS`` forbids.
    """
    if status not in Status.values:
        raise ValidationError(f"Unknown account status {status!r}.", field="status")
    with transaction.atomic():
        current = _locked(account).status
        if current != status and status not in STATUS_TRANSITIONS[current]:
            raise Conflict(
                f"An account cannot go from {current} to {status}.",
                error="invalid_status_transition",
                details={"from": current, "to": status},
            )
        return _account_change(
            account=account,
            changes={"status": status},
            action="account.status_changed",
            event_type="AccountStatusChanged",
            actor=actor,
            reason=reason,
            request=request,
        )


def account_blocks_set(
    *,
    account: BrokerageAccount,
    actor: Any,
    reason: str,
    trading_blocked: bool | None = None,
    transfers_blocked: bool | None = None,
    account_blocked: bool | None = None,
    request: Any = None,
) -> BrokerageAccount:
    """Set or clear the blocks (freeze/unfreeze); ``None`` leaves a block as it is. Audited."""
    changes = {
        name: value
        for name, value in (
            ("trading_blocked", trading_blocked),
            ("transfers_blocked", transfers_blocked),
            ("account_blocked", account_blocked),
        )
        if value is not None
    }
    return _account_change(
        account=account,
        changes=changes,
        action="account.blocks_changed",
        event_type="AccountBlocksChanged",
        actor=actor,
        reason=reason,
        request=request,
    )


def account_trading_halt(
    *, account: BrokerageAccount, reason: str, actor: Any = None, request: Any = None
) -> BrokerageAccount:
    """The kill switch: stop trading on the account until ``account_trading_resume``. Audited."""
    if not reason.strip():
        raise ValidationError("A halt needs a reason.", field="reason")
    return _account_change(
        account=account,
        changes={"trading_halted_reason": reason.strip()[:200]},
        action="account.trading_halted",
        event_type="AccountTradingHalted",
        actor=actor,
        reason=reason,
        request=request,
    )


def account_trading_resume(
    *, account: BrokerageAccount, actor: Any = None, reason: str = "", request: Any = None
) -> BrokerageAccount:
    return _account_change(
        account=account,
        changes={"trading_halted_reason": ""},
        action="account.trading_resumed",
        event_type="AccountTradingResumed",
        actor=actor,
        reason=reason,
        request=request,
    )


# --- Users: registration and password reset ---------------------------------------------------------


def _password_validate(password: str, user: User) -> None:
    try:
        validate_password(password, user=user)
    except DjangoValidationError as exc:
        raise ValidationError(" ".join(exc.messages), field="password", error="weak_password") from None


def user_register(*, email: str, password: str, request: Any = None) -> User | None:
    """Create the user and their brokerage account; ``None`` if the email is taken.

    The caller answers both cases alike (no enumeration); the existing owner gets an email instead. The
    password is hashed either way, so both cases cost the same.
    """
    email = User.objects.normalize_email(email).strip()
    candidate = User(email=email, username=email[:150])
    _password_validate(password, candidate)
    candidate.set_password(password)
    if User.objects.filter(email__iexact=email).exists():
        _mail(
            email, "Sign-up attempt", "Someone tried to sign up with your email. You already have an account."
        )
        return None
    try:
        with transaction.atomic():
            candidate.save()
            audit_record(
                actor=candidate,
                action="user.registered",
                target=candidate,
                before=None,
                after={"email": email},
                request=request,
            )
            account_open(user=candidate, request=request)
    except IntegrityError:
        return None  # a concurrent sign-up with the same email won
    return candidate


def _mail(to: str, subject: str, body: str) -> None:
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [to], fail_silently=False)


def password_reset_request(*, email: str, request: Any = None) -> None:
    """Email a single-use, expiring reset token if the email belongs to an active user; silent otherwise."""
    user = User.objects.filter(email__iexact=email.strip(), is_active=True).first()
    if user is None:
        return
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    _mail(
        user.email,
        "Password reset",
        f"Reset your password with uid={uid} token={token} (valid {settings.PASSWORD_RESET_TIMEOUT // 60} min).",
    )
    with transaction.atomic():
        audit_record(
            actor=user,
            action="user.password_reset_requested",
            target=user,
            before=None,
            after=None,
            request=request,
        )


def password_reset_confirm(*, uid: str, token: str, new_password: str, request: Any = None) -> User:
    """Set a new password if ``token`` is valid. The token dies with the change (it hashes the old password)."""
    try:
        user = User.objects.get(pk=force_str(urlsafe_base64_decode(uid)), is_active=True)
    except (ValueError, TypeError, OverflowError, DjangoValidationError, User.DoesNotExist):
        user = None
    if user is None or not default_token_generator.check_token(user, token):
        raise BusinessRuleViolation("The reset link is invalid or has expired.", error="invalid_reset_token")
    _password_validate(new_password, user)
    with transaction.atomic():
        user.set_password(new_password)
        user.save(update_fields=["password"])
        audit_record(
            actor=user, action="user.password_reset", target=user, before=None, after=None, request=request
        )
    return user


# --- API keys ------------------------------------------------------------------------------------------


def api_key_create(
    *,
    owner: User,
    name: str,
    scopes: Iterable[str],
    expires_at: datetime | None = None,
    request: Any = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns it with the plaintext secret, which exists nowhere else afterwards."""
    scope_list = sorted(set(scopes))
    if not scope_list or any(s not in ApiKey.Scope.values for s in scope_list):
        raise ValidationError("scopes must be a non-empty subset of read, trade, transfer.", field="scopes")
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError("expires_at must be in the future.", field="expires_at")
    secret = apikeys.secret_generate()
    with transaction.atomic():
        while True:
            key_id = apikeys.key_id_generate()
            if not ApiKey.objects.filter(key_id=key_id).exists():
                break
        key = ApiKey.objects.create(
            key_id=key_id,
            secret_hash=apikeys.secret_hash(key_id, secret),
            owner=owner,
            name=name,
            scopes=scope_list,
            expires_at=expires_at,
        )
        audit_record(
            actor=owner,
            action="api_key.created",
            target=key,
            before=None,
            after=model_snapshot(key, ["key_id", "name", "scopes", "expires_at"]),
            request=request,
        )
    return key, secret


def api_key_revoke(*, key: ApiKey, actor: Any, request: Any = None) -> ApiKey:
    """Revoke ``key`` (idempotent: revoking a revoked key changes nothing)."""
    with transaction.atomic():
        locked = ApiKey.objects.select_for_update().get(pk=key.pk)
        if locked.revoked_at is not None:
            return locked
        locked.revoked_at = timezone.now()
        locked.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor,
            action="api_key.revoked",
            target=locked,
            before={"revoked_at": None},
            after={"revoked_at": locked.revoked_at},
            request=request,
        )
        return locked


# --- Second factor ---------------------------------------------------------------------------------------


def otp_totp_enrol(*, user: User, request: Any = None) -> TOTPDevice:
    """Start TOTP enrolment: a new unconfirmed device (earlier unconfirmed ones are dropped)."""
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        device = TOTPDevice.objects.create(user=user, name="totp", confirmed=False)
        audit_record(
            actor=user,
            action="otp.totp_enrolment_started",
            target=device,
            before=None,
            after=None,
            request=request,
        )
    return device


def otp_totp_confirm(*, user: User, device: TOTPDevice, request: Any = None) -> list[str]:
    """Confirm a device whose token was verified; return fresh backup codes (shown once)."""
    with transaction.atomic():
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        codes = otp_backup_codes_regenerate(user=user, request=request)
        audit_record(
            actor=user,
            action="otp.totp_confirmed",
            target=device,
            before={"confirmed": False},
            after={"confirmed": True},
            request=request,
        )
    return codes


def otp_backup_codes_regenerate(*, user: User, request: Any = None) -> list[str]:
    """Replace the user's static backup codes with ``BACKUP_CODE_COUNT`` new single-use ones."""
    with transaction.atomic():
        device, _ = StaticDevice.objects.get_or_create(user=user, name="backup", defaults={"confirmed": True})
        device.token_set.all().delete()
        codes = [StaticToken.random_token() for _ in range(BACKUP_CODE_COUNT)]
        StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
        audit_record(
            actor=user,
            action="otp.backup_codes_regenerated",
            target=device,
            before=None,
            after={"count": len(codes)},
            request=request,
        )
    return codes
