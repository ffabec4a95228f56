"""The kyc app's calls into other apps, in one place (accounts services/audit, settlement ledger).

Every cross-app call goes through here so the contracts of ``docs/interfaces.md`` are visible at a glance. The
callee modules are imported when called (never at import time), which keeps app loading free of cycles.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from apps.accounts.models import BrokerageAccount


def audit(
    *,
    actor: Any,
    action: str,
    target: Any,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    request: Any = None,
) -> None:
    """Append an audit record in the caller's transaction (``apps.accounts.audit.audit_record``)."""
    from apps.accounts.audit import audit_record

    audit_record(actor=actor, action=action, target=target, before=before, after=after, request=request)


def account_status_change(
    *, account: BrokerageAccount, status: str, actor: Any, reason: str, request: Any = None
) -> None:
    """Move the brokerage account to ``status`` through the accounts service (which audits it)."""
    from apps.accounts.services import account_status_set

    account_status_set(account=account, status=status, actor=actor, reason=reason, request=request)


def account_blocks_change(
    *, account: BrokerageAccount, actor: Any, reason: str, blocked: bool, request: Any = None
) -> None:
    """Block (or unblock) trading and transfers on the account through the accounts service (audited)."""
    from apps.accounts.services import account_blocks_set

    account_blocks_set(
        account=account, actor=actor, reason=reason, trading_blocked=blocked, transfers_blocked=blocked,
        request=request,
    )  # fmt: skip


def account_of_user(user: Any) -> BrokerageAccount:
    """The caller's own brokerage account (raises ``apps.core.errors.NotFound``)."""
    from apps.accounts.selectors import account_for_user

    return account_for_user(user)


def ledger_cash_deposit(
    *, account: BrokerageAccount, amount: Decimal, transfer_id: str, description: str
) -> None:
    from apps.settlement.services import cash_deposit_post

    cash_deposit_post(account=account, amount=amount, transfer_id=transfer_id, description=description)


def ledger_cash_withdrawal(*, account: BrokerageAccount, amount: Decimal, transfer_id: str) -> None:
    """Raises ``apps.core.errors.InsufficientFunds`` when settled cash does not cover ``amount``."""
    from apps.settlement.services import cash_withdrawal_post

    cash_withdrawal_post(account=account, amount=amount, transfer_id=transfer_id)


def ledger_shares_deposit(
    *, account: BrokerageAccount, symbol: str, qty: Decimal, cost_basis: Decimal, transfer_id: str
) -> None:
    from apps.settlement.services import shares_deposit_post

    shares_deposit_post(
        account=account, symbol=symbol, qty=qty, cost_basis=cost_basis, transfer_id=transfer_id
    )


def ledger_shares_withdrawal(
    *, account: BrokerageAccount, symbol: str, qty: Decimal, transfer_id: str
) -> None:
    from apps.settlement.services import shares_withdrawal_post

    shares_withdrawal_post(account=account, symbol=symbol, qty=qty, transfer_id=transfer_id)


def ledger_withdrawable(account: BrokerageAccount) -> Decimal:
    from apps.settlement.selectors import cash_balances

    return cash_balances(account).withdrawable
