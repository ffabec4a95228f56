"""AML monitoring: rules over completed funding movements and executed trades that raise alerts into cases.

Rules (thresholds from the ``AmlThresholdSet`` in force at the event's time; each alert records the version):
- large_cash_deposit: one completed cash deposit >= ``large_cash_amount``.
- structuring: >= ``structuring_min_count`` completed deposits in [``structuring_floor``, ``large_cash_amount``)
  within ``structuring_window_hours`` (the triggering deposit included).
- rapid_in_out: a completed withdrawal that, with the other withdrawals in ``rapid_window_hours``, takes out at
  least ``rapid_min_ratio`` of what was deposited in that window (deposits >= ``rapid_min_amount``), with at most
  ``rapid_max_trades`` trades in between.
- wash_trade: a trade whose buyer and seller are the same account, or accounts linked by the same owner (tax id
  digest), the same residence address or a shared device.
- dormant_activity: a movement >= ``dormant_min_amount`` on an account older than ``dormant_days`` whose previous
  activity (completed transfer or trade) is older than ``dormant_days`` (or which never had any).

Invariants: raising is idempotent (``AmlAlert.fingerprint`` is unique and derives from the triggering source
ids); every alert joins the account's open case (one open case per account), created on demand.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from apps.accounts.models import BrokerageAccount
from apps.core.errors import Conflict, NotFound, ValidationError
from apps.core.money import WIDE
from apps.core.outbox import event_record
from apps.kyc import ports
from apps.kyc.models import (
    AccountDevice,
    AmlAlert,
    AmlCase,
    AmlCaseNote,
    AmlThresholdSet,
    AmlTradeObservation,
    KycApplication,
    Transfer,
)

SYSTEM_ACTOR = "aml-monitor"
CASH_TYPES = (Transfer.Type.ACH, Transfer.Type.WIRE)


def _thresholds_until(at: datetime) -> QuerySet[AmlThresholdSet]:
    """The threshold sets in force at ``at`` or before, the one in force at ``at`` first."""
    return AmlThresholdSet.objects.filter(effective_from__lte=at).order_by("-effective_from", "-version")


def _thresholds_missing() -> NotFound:
    return NotFound("no AML threshold set is in force", error="aml_thresholds_missing")


def aml_thresholds_at(at: datetime) -> AmlThresholdSet:
    thresholds = _thresholds_until(at).first()
    if thresholds is None:
        raise _thresholds_missing()
    return thresholds


def device_observe(*, account: BrokerageAccount, device_key: str) -> None:
    AccountDevice.objects.bulk_create(
        [AccountDevice(account=account, device_key=device_key[:100])], ignore_conflicts=True
    )


def _open_case(account: BrokerageAccount) -> AmlCase:
    """The account's one open case (``kyc_aml_one_open_case``), opened here when there is none.

    Two alerts for one account can be raised at once (the trades and the transfers consumers, two worker
    children): both see no open case and both insert. The loser's insert waits for the winner's commit, fails on the
    unique index, and joins the winner's case (read again in a new statement: read committed).
    """
    open_cases = AmlCase.objects.filter(account=account).exclude(status=AmlCase.Status.CLOSED)
    case = open_cases.first()
    if case is not None:
        return case
    try:
        with transaction.atomic():
            created: AmlCase = AmlCase.objects.create(account=account)
            return created
    except IntegrityError:
        return open_cases.get()


def _alert_raise(
    *,
    account: BrokerageAccount,
    rule: str,
    fingerprint: str,
    details: dict[str, Any],
    thresholds: AmlThresholdSet,
) -> AmlAlert | None:
    """Raise once per fingerprint; returns None when it was raised before."""
    try:
        with transaction.atomic():
            alert = AmlAlert.objects.create(
                account=account,
                rule=rule,
                fingerprint=fingerprint[:200],
                details=details,
                thresholds=thresholds,
            )
    except IntegrityError:
        return None
    case = _open_case(account)
    alert.case = case
    alert.save(update_fields=["case"])
    ports.audit(
        actor=SYSTEM_ACTOR, action=f"aml.alert_raised.{rule}", target=alert, before=None,
        after={"account_id": str(account.pk), "case_id": str(case.pk), **details},
    )  # fmt: skip
    event_record(
        topic="accounts.events", key=str(account.pk), event_type="aml.AlertRaised", aggregate_type="aml_case",
        aggregate_id=str(case.pk),
        payload={"alert_id": str(alert.pk), "account_id": str(account.pk), "rule": rule,
                 "thresholds_version": thresholds.version},
    )  # fmt: skip
    return alert


def _completed(account: BrokerageAccount, direction: str) -> Any:
    return Transfer.objects.filter(
        account=account, direction=direction, type__in=CASH_TYPES, status=Transfer.Status.COMPLETE
    )


def _last_activity_before(
    account: BrokerageAccount, at: datetime, exclude_transfer: Any = None
) -> datetime | None:
    transfer = (
        Transfer.objects.filter(account=account, status=Transfer.Status.COMPLETE, completed_at__lt=at)
        .exclude(pk=exclude_transfer)
        .order_by("-completed_at")
        .values_list("completed_at", flat=True)
        .first()
    )
    trade = (
        AmlTradeObservation.objects.filter(account=account, executed_at__lt=at)
        .order_by("-executed_at")
        .values_list("executed_at", flat=True)
        .first()
    )
    return max((t for t in (transfer, trade) if t is not None), default=None)


def _dormant_check(
    *, account: BrokerageAccount, at: datetime, amount: Decimal, source: str, thresholds: AmlThresholdSet,
    exclude_transfer: Any = None,
) -> list[AmlAlert]:  # fmt: skip
    if amount < thresholds.dormant_min_amount:
        return []
    dormant_since = at - timedelta(days=thresholds.dormant_days)
    if account.created_at > dormant_since:
        return []
    last = _last_activity_before(account, at, exclude_transfer)
    if last is not None and last > dormant_since:
        return []
    alert = _alert_raise(
        account=account, rule=AmlAlert.Rule.DORMANT, fingerprint=f"dormant:{source}", thresholds=thresholds,
        details={"source": source, "amount": str(amount), "last_activity": last.isoformat() if last else None,
                 "dormant_days": thresholds.dormant_days},
    )  # fmt: skip
    return [alert] if alert else []


def aml_transfer_evaluate(*, transfer: Transfer) -> list[AmlAlert]:
    """Run the funding rules for one completed transfer (inside the completing transaction)."""
    if transfer.status != Transfer.Status.COMPLETE or transfer.completed_at is None:
        return []
    at = transfer.completed_at
    t = aml_thresholds_at(at)
    account = transfer.account
    raised: list[AmlAlert] = []
    if transfer.type == Transfer.Type.ACATS:
        return raised
    assert transfer.amount is not None
    amount = transfer.amount

    def add(alert: AmlAlert | None) -> None:
        if alert is not None:
            raised.append(alert)

    if transfer.direction == Transfer.Direction.INCOMING:
        if amount >= t.large_cash_amount:
            add(_alert_raise(
                account=account, rule=AmlAlert.Rule.LARGE_CASH, fingerprint=f"large_cash:{transfer.pk}",
                thresholds=t, details={"transfer_id": str(transfer.pk), "amount": str(amount),
                                       "threshold": str(t.large_cash_amount)},
            ))  # fmt: skip
        elif amount >= t.structuring_floor:
            window = _completed(account, Transfer.Direction.INCOMING).filter(
                completed_at__gt=at - timedelta(hours=t.structuring_window_hours), completed_at__lte=at,
                amount__gte=t.structuring_floor, amount__lt=t.large_cash_amount,
            )  # fmt: skip
            ids = sorted(str(pk) for pk in window.values_list("pk", flat=True))
            if len(ids) >= t.structuring_min_count:
                add(_alert_raise(
                    account=account, rule=AmlAlert.Rule.STRUCTURING, fingerprint=f"structuring:{transfer.pk}",
                    thresholds=t, details={"transfer_ids": ids, "count": len(ids),
                                           "total": str(window.aggregate(s=Sum("amount"))["s"]),
                                           "window_hours": t.structuring_window_hours},
                ))  # fmt: skip
    else:
        since = at - timedelta(hours=t.rapid_window_hours)
        deposited = _completed(account, Transfer.Direction.INCOMING).filter(
            completed_at__gt=since, completed_at__lte=at
        ).aggregate(s=Sum("amount"))["s"] or Decimal(0)
        withdrawn = _completed(account, Transfer.Direction.OUTGOING).filter(
            completed_at__gt=since, completed_at__lte=at
        ).aggregate(s=Sum("amount"))["s"] or Decimal(0)
        trades = AmlTradeObservation.objects.filter(
            account=account, executed_at__gt=since, executed_at__lte=at
        ).count()
        if (
            deposited >= t.rapid_min_amount
            and withdrawn >= deposited * t.rapid_min_ratio
            and trades <= t.rapid_max_trades
        ):
            add(_alert_raise(
                account=account, rule=AmlAlert.Rule.RAPID_IN_OUT, fingerprint=f"rapid:{transfer.pk}", thresholds=t,
                details={"transfer_id": str(transfer.pk), "deposited": str(deposited), "withdrawn": str(withdrawn),
                         "trades": trades, "window_hours": t.rapid_window_hours},
            ))  # fmt: skip
    raised += _dormant_check(
        account=account, at=at, amount=amount, source=f"transfer:{transfer.pk}", thresholds=t,
        exclude_transfer=transfer.pk,
    )  # fmt: skip
    return raised


def accounts_linked(a: BrokerageAccount, b: BrokerageAccount) -> list[str]:
    """Why two accounts are the same beneficial party: same owner, address or device (empty when unrelated)."""
    return _TradeContext.load([a, b]).linked(a, b)


@dataclass(frozen=True, slots=True)
class TradeSeen:
    """One executed trade as AML monitoring takes it (both sides' accounts already resolved)."""

    trade_id: str
    symbol: str
    qty: Decimal
    price: Decimal
    executed_at: datetime
    buy_account: BrokerageAccount
    sell_account: BrokerageAccount


@dataclass(slots=True)
class _TradeContext:
    """What the trade rules read and a batch of trades never changes: KYC applications, devices, thresholds."""

    kyc: dict[Any, KycApplication]
    devices: dict[Any, set[str]]
    thresholds: list[AmlThresholdSet]  # newest first, as ``aml_thresholds_at`` orders them

    @classmethod
    def load(cls, accounts: list[BrokerageAccount], until: datetime | None = None) -> _TradeContext:
        ids = {a.pk for a in accounts}
        devices: dict[Any, set[str]] = {}
        for account_id, key in AccountDevice.objects.filter(account_id__in=ids).values_list(
            "account_id", "device_key"
        ):
            devices.setdefault(account_id, set()).add(key)
        thresholds = [] if until is None else list(_thresholds_until(until))
        return cls(
            kyc={k.account_id: k for k in KycApplication.objects.filter(account_id__in=ids)},
            devices=devices,
            thresholds=thresholds,
        )

    def thresholds_at(self, at: datetime) -> AmlThresholdSet:
        for t in self.thresholds:
            if t.effective_from <= at:
                return t
        raise _thresholds_missing()

    def linked(self, a: BrokerageAccount, b: BrokerageAccount) -> list[str]:
        if a.pk == b.pk:
            return ["same_account"]
        reasons = []
        if a.owner_id == b.owner_id:
            reasons.append("shared_owner")
        ka, kb = self.kyc.get(a.pk), self.kyc.get(b.pk)
        if ka and kb:
            if ka.tax_id_digest and ka.tax_id_digest == kb.tax_id_digest:
                reasons.append("shared_owner")
            if ka.address_key and ka.address_key == kb.address_key:
                reasons.append("shared_address")
        if self.devices.get(a.pk, set()) & self.devices.get(b.pk, set()):
            reasons.append("shared_device")
        return sorted(set(reasons))


def aml_trade_observe(
    *,
    trade_id: str,
    symbol: str,
    qty: Decimal,
    price: Decimal,
    executed_at: datetime,
    buy_account: BrokerageAccount,
    sell_account: BrokerageAccount,
) -> list[AmlAlert]:
    """Record one executed trade's two sides and run the trade rules (idempotent by ``trade_id``)."""
    trade = TradeSeen(trade_id, symbol, qty, price, executed_at, buy_account, sell_account)
    return aml_trades_observe([trade])


def aml_trades_observe(trades: list[TradeSeen]) -> list[AmlAlert]:
    """``aml_trade_observe`` for each trade in turn, with the same effect, in one transaction.

    What the rules read and trades never write (KYC applications, devices, threshold sets) is loaded once for the
    batch; each trade's observation, dormancy check and alerts still run in order, so a later trade sees the
    earlier ones exactly as it would one trade at a time.
    """
    if not trades:
        return []
    with transaction.atomic():
        ctx = _TradeContext.load(
            [a for t in trades for a in (t.buy_account, t.sell_account)],
            until=max(t.executed_at for t in trades),
        )
        raised: list[AmlAlert] = []
        for trade in trades:
            raised += _trade_observe(trade, ctx)
        return raised


def _trade_observe(trade: TradeSeen, ctx: _TradeContext) -> list[AmlAlert]:
    t = ctx.thresholds_at(trade.executed_at)  # refused (NotFound) before anything of this trade is written
    buy_account, sell_account, trade_id = trade.buy_account, trade.sell_account, trade.trade_id
    # ignore_conflicts gives no reliable pks; idempotency comes from the alert fingerprints
    AmlTradeObservation.objects.bulk_create(
        [
            AmlTradeObservation(
                account=account,
                trade_id=trade_id,
                side=side,
                symbol=trade.symbol,
                qty=trade.qty,
                price=trade.price,
                executed_at=trade.executed_at,
            )
            for account, side in ((buy_account, "buy"), (sell_account, "sell"))
        ],
        ignore_conflicts=True,
    )
    raised: list[AmlAlert] = []
    links = ctx.linked(buy_account, sell_account)
    if links:
        for account in {buy_account.pk: buy_account, sell_account.pk: sell_account}.values():
            alert = _alert_raise(
                account=account, rule=AmlAlert.Rule.WASH_TRADE, fingerprint=f"wash:{trade_id}:{account.pk}",
                thresholds=t,
                details={"trade_id": trade_id, "symbol": trade.symbol, "qty": str(trade.qty),
                         "price": str(trade.price), "buy_account_id": str(buy_account.pk),
                         "sell_account_id": str(sell_account.pk), "links": links},
            )  # fmt: skip
            if alert:
                raised.append(alert)
    for account in {buy_account.pk: buy_account, sell_account.pk: sell_account}.values():
        raised += _dormant_check(
            account=account, at=trade.executed_at, amount=WIDE.multiply(trade.qty, trade.price),
            source=f"trade:{trade_id}:{account.pk}", thresholds=t,
        )  # fmt: skip
    return raised


# ------------------------------------------------------------------------------------------- case work


def _case_locked(case: AmlCase) -> AmlCase:
    return AmlCase.objects.select_for_update().get(pk=case.pk)


def aml_case_assign(*, case: AmlCase, assignee: Any, actor: Any, request: Any = None) -> AmlCase:
    with transaction.atomic():
        case = _case_locked(case)
        if case.status == AmlCase.Status.CLOSED:
            raise Conflict("the case is closed")
        before = {"assignee": str(case.assignee_id) if case.assignee_id else None, "status": case.status}
        case.assignee = assignee
        case.status = AmlCase.Status.INVESTIGATING
        case.save(update_fields=["assignee", "status"])
        ports.audit(actor=actor, action="aml.case_assigned", target=case, before=before,
                    after={"assignee": str(assignee.pk), "status": case.status}, request=request)  # fmt: skip
        return case


def aml_case_note_add(*, case: AmlCase, author: Any, body: str, request: Any = None) -> AmlCaseNote:
    if not body.strip():
        raise ValidationError("a note needs text", field="body")
    with transaction.atomic():
        case = _case_locked(case)
        note = AmlCaseNote.objects.create(case=case, author=author, body=body)
        ports.audit(actor=author, action="aml.case_note_added", target=case, before=None,
                    after={"note_id": note.pk, "body": body}, request=request)  # fmt: skip
        return note


def aml_case_close(
    *, case: AmlCase, actor: Any, disposition: str, sar_narrative: str = "", request: Any = None
) -> AmlCase:
    if disposition not in AmlCase.Disposition.values or disposition == "":
        raise ValidationError(f"unknown disposition {disposition!r}", field="disposition")
    if disposition == AmlCase.Disposition.SAR_FILED and not sar_narrative.strip():
        raise ValidationError("a SAR disposition needs a narrative", field="sar_narrative")
    with transaction.atomic():
        case = _case_locked(case)
        if case.status == AmlCase.Status.CLOSED:
            raise Conflict("the case is already closed")
        before = {"status": case.status, "disposition": case.disposition}
        case.status = AmlCase.Status.CLOSED
        case.disposition = disposition
        case.sar_narrative = sar_narrative or case.sar_narrative
        case.closed_at = timezone.now()
        case.save(update_fields=["status", "disposition", "sar_narrative", "closed_at"])
        ports.audit(actor=actor, action="aml.case_closed", target=case, before=before,
                    after={"status": case.status, "disposition": disposition}, request=request)  # fmt: skip
        return case


def sar_draft(case: AmlCase) -> dict[str, Any]:
    """A Suspicious Activity Report draft (FinCEN SAR fields we can fill); tax id masked."""
    account = case.account
    application = KycApplication.objects.filter(account=account).first()
    alerts = list(case.alerts.order_by("raised_at"))
    transfer_ids = {
        d for a in alerts for d in [a.details.get("transfer_id"), *a.details.get("transfer_ids", [])] if d
    }
    transfers = Transfer.objects.filter(Q(pk__in=transfer_ids)).order_by("created_at")
    return {
        "case_id": str(case.pk),
        "status": case.status,
        "disposition": case.disposition,
        "subject": {
            "account_id": str(account.pk),
            "account_number": account.account_number,
            "name": application.full_name if application else "",
            "date_of_birth": application.date_of_birth.isoformat()
            if application and application.date_of_birth
            else None,
            "tax_id": application.tax_id_masked if application else "",
            "address": " ".join(
                [
                    *(application.street_address or []),
                    application.city,
                    application.state,
                    application.postal_code,
                    application.country,
                ]
            ).strip()
            if application
            else "",
        },
        "activity": [
            {
                "alert_id": str(a.pk),
                "rule": a.rule,
                "raised_at": a.raised_at.isoformat(),
                "thresholds_version": a.thresholds.version,
                "details": a.details,
            }
            for a in alerts
        ],
        "transactions": [
            {
                "transfer_id": str(tr.pk),
                "direction": tr.direction,
                "type": tr.type,
                "amount": str(tr.amount),
                "status": tr.status,
                "completed_at": tr.completed_at.isoformat() if tr.completed_at else None,
            }
            for tr in transfers
        ],
        "total_amount": str(sum((tr.amount or Decimal(0) for tr in transfers), Decimal(0))),
        "narrative": case.sar_narrative,
        "notes": [
            {"author": str(n.author), "at": n.created_at.isoformat(), "body": n.body}
            for n in case.notes.all()
        ],
    }


def sar_draft_csv(cases: list[AmlCase]) -> str:
    """One row per alert of each case, for spreadsheet review."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["case_id", "account_number", "subject_name", "tax_id", "rule", "raised_at", "details", "narrative"]
    )
    for case in cases:
        draft = sar_draft(case)
        for item in draft["activity"] or [{"rule": "", "raised_at": "", "details": {}}]:
            writer.writerow([
                draft["case_id"], draft["subject"]["account_number"], draft["subject"]["name"],
                draft["subject"]["tax_id"], item["rule"], item["raised_at"], item["details"], draft["narrative"],
            ])  # fmt: skip
    return out.getvalue()
