"""Reads of the accounts app. Object-level rule: a customer only reaches their own rows; anything else is NotFound."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from django.db.models import QuerySet

from apps.accounts.models import ApiKey, BrokerageAccount, User
from apps.core.errors import BusinessRuleViolation, NotFound
from apps.core.money import WIDE
from apps.core.sql import hot_cursor, model_from_row, select_list

ZERO = Decimal("0")


def account_for_user(user: Any) -> BrokerageAccount:
    """The caller's brokerage account; ``NotFound`` if they have none."""
    if user is None or not getattr(user, "is_authenticated", False):
        raise NotFound("No brokerage account.")
    try:
        if User.brokerage_account.is_cached(user):  # loaded by the authentication's query of this request
            account: BrokerageAccount = user.brokerage_account
            return account
        return BrokerageAccount.objects.get(owner_id=user.pk)
    except BrokerageAccount.DoesNotExist:
        raise NotFound("No brokerage account.") from None


def account_trading_check(account: BrokerageAccount) -> None:
    """Raise ``BusinessRuleViolation`` unless ``account`` may place orders now.

    ``error`` is ``account_not_active`` (status is not ACTIVE), ``trading_blocked`` (trading or whole-account
    block) or ``trading_halted`` (the kill switch; ``details.reason`` says why).
    """
    if account.status != BrokerageAccount.Status.ACTIVE:
        raise BusinessRuleViolation(
            "The account is not active.",
            error="account_not_active",
            rule="account.status == ACTIVE",
            details={"status": account.status},
        )
    if account.account_blocked or account.trading_blocked:
        raise BusinessRuleViolation(
            "Trading is blocked on this account.",
            error="trading_blocked",
            rule="not (account_blocked or trading_blocked)",
            details={"account_blocked": account.account_blocked, "trading_blocked": account.trading_blocked},
        )
    if account.trading_halted_reason:
        raise BusinessRuleViolation(
            "Trading is halted on this account.",
            error="trading_halted",
            rule="trading_halted_reason is empty",
            details={"reason": account.trading_halted_reason},
        )


def api_key_with_owner(key_id: str) -> ApiKey | None:
    """The API key ``key_id`` with its owner and the owner's brokerage account loaded (None: no such key).

    Every API-key request runs this, so it is one prepared statement whose rows become the three instances
    (``apps.core.sql.model_from_row``) with the ORM's relation caches set as ``select_related`` sets them:
    ``key.owner`` and ``owner.brokerage_account`` (cached as missing when the owner has none) cost no query.
    Building the same join through ``select_related(...).get()`` took about a third of a bare API request's CPU.
    """
    with hot_cursor() as cursor:
        cursor.execute(_API_KEY_SQL, [key_id])
        row = cursor.fetchone()
    if row is None:
        return None
    key = model_from_row(ApiKey, row)
    owner = model_from_row(User, row, _OWNER_AT)
    if key is None or owner is None:  # both are inner-joined on their primary keys
        raise ValueError("API key row without its key or owner")
    account = model_from_row(BrokerageAccount, row, _ACCOUNT_AT)
    _KEY_OWNER.set_cached_value(key, owner)
    _ACCOUNT_OWNER.remote_field.set_cached_value(owner, account)
    if account is not None:
        _ACCOUNT_OWNER.set_cached_value(account, owner)
    return key


_KEY_OWNER: Final = ApiKey._meta.get_field("owner")
_ACCOUNT_OWNER: Final = BrokerageAccount._meta.get_field("owner")
_OWNER_AT: Final = len(ApiKey._meta.concrete_fields)
_ACCOUNT_AT: Final = _OWNER_AT + len(User._meta.concrete_fields)
_API_KEY_SQL: Final = (
    f"SELECT {select_list(ApiKey, 'k')}, {select_list(User, 'u')}, {select_list(BrokerageAccount, 'b')} "  # noqa: S608 (model meta)
    f"FROM {ApiKey._meta.db_table} k JOIN {User._meta.db_table} u ON u.id = k.owner_id "
    f"LEFT JOIN {BrokerageAccount._meta.db_table} b ON b.owner_id = u.id WHERE k.key_id = %s"
)


def api_keys_of(user: Any) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(owner_id=user.pk).order_by("-created_at", "pk")


def api_key_of(user: Any, key_id: str) -> ApiKey:
    key = ApiKey.objects.filter(owner_id=user.pk, key_id=key_id).first()
    if key is None:
        raise NotFound("API key not found.")
    return key


@dataclass(frozen=True)
class AccountSummary:
    """The numbers behind ``GET /v2/account`` (all exact Decimals)."""

    cash: Decimal
    buying_power: Decimal
    withdrawable: Decimal
    long_market_value: Decimal
    short_market_value: Decimal
    equity: Decimal


def _mark_price(symbol: str, fallback: Decimal) -> Decimal:
    """Last trade, else the reference price, else the position's average entry price."""
    from apps.marketdata import selectors as marketdata

    trade = marketdata.latest_trade(symbol)
    if trade is not None and trade.get("p") is not None:
        return Decimal(str(trade["p"]))
    reference = marketdata.reference_price(symbol)
    return Decimal(reference) if reference is not None else fallback


def account_summary(account: BrokerageAccount) -> AccountSummary:
    """Cash and positions from the ledger (``apps.settlement.selectors``), combined the way Alpaca reports them.

    cash = settled + unsettled + held (an open order's hold is still the customer's cash, as in Alpaca);
    market values = qty x mark price; equity = cash + long - |short|.
    """
    from apps.settlement import selectors as ledger

    balances = ledger.cash_balances(account)
    cash = balances.settled + balances.unsettled + balances.held
    long_value = ZERO
    short_value = ZERO
    for position in ledger.positions(account):
        value = WIDE.multiply(position.qty, _mark_price(position.symbol, position.avg_entry_price))
        if value >= 0:
            long_value = WIDE.add(long_value, value)
        else:
            short_value = WIDE.add(short_value, value)
    return AccountSummary(
        cash=cash,
        buying_power=balances.buying_power,
        withdrawable=balances.withdrawable,
        long_market_value=long_value,
        short_market_value=short_value,
        equity=cash + long_value + short_value,
    )
