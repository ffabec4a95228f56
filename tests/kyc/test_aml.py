"""AML rules: each fires on its scenario and stays quiet on a benign baseline; alerts become cases; SAR drafts."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.accounts.models import AuditRecord, BrokerageAccount
from apps.kyc.models import AccountDevice, AmlAlert, AmlCase, AmlThresholdSet, KycApplication, Transfer
from apps.kyc.services.aml import (
    aml_case_assign,
    aml_case_close,
    aml_case_note_add,
    aml_trade_observe,
    aml_transfer_evaluate,
    sar_draft,
    sar_draft_csv,
)
from tests.kyc.factories import make_account, make_staff, make_transfer

pytestmark = pytest.mark.django_db
IN, OUT = Transfer.Direction.INCOMING, Transfer.Direction.OUTGOING


@pytest.fixture
def account() -> BrokerageAccount:
    return make_account(status=BrokerageAccount.Status.ACTIVE)


def _completed(
    account: BrokerageAccount, amount: str, *, ago: timedelta = timedelta(0), direction: str = IN
) -> Transfer:
    transfer = make_transfer(account=account, amount=Decimal(amount), direction=direction)
    Transfer.objects.filter(pk=transfer.pk).update(completed_at=timezone.now() - ago)
    transfer.refresh_from_db()
    return transfer


def _rules(alerts: list[AmlAlert]) -> list[str]:
    return sorted(a.rule for a in alerts)


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        pytest.param("10000", ["large_cash_deposit"], id="at-threshold"),
        pytest.param("25000.50", ["large_cash_deposit"], id="above"),
        pytest.param("9999.99", [], id="just-below"),
    ],
)
def test_large_cash_deposit(account: BrokerageAccount, amount: str, expected: list[str]) -> None:
    assert _rules(aml_transfer_evaluate(transfer=_completed(account, amount))) == expected


def test_structuring_fires_on_repeated_just_under_deposits(account: BrokerageAccount) -> None:
    _completed(account, "9500", ago=timedelta(days=3))
    _completed(account, "9800", ago=timedelta(days=1))
    alerts = aml_transfer_evaluate(transfer=_completed(account, "9900"))
    assert _rules(alerts) == ["structuring"]
    assert alerts[0].details["count"] == 3
    assert alerts[0].details["total"] == "29200.0000"


@pytest.mark.parametrize(
    "history",
    [
        pytest.param([("9500", 8), ("9800", 9)], id="outside-window"),
        pytest.param([("9500", 1)], id="only-two"),
        pytest.param([("2000", 1), ("3000", 2)], id="small-deposits"),
    ],
)
def test_structuring_quiet_on_benign(account: BrokerageAccount, history: list[tuple[str, int]]) -> None:
    for amount, days in history:
        _completed(account, amount, ago=timedelta(days=days))
    assert aml_transfer_evaluate(transfer=_completed(account, "9900")) == []


def test_rapid_in_and_out_fires(account: BrokerageAccount) -> None:
    _completed(account, "8000", ago=timedelta(hours=20))
    alerts = aml_transfer_evaluate(transfer=_completed(account, "7900", direction=OUT))
    assert _rules(alerts) == ["rapid_in_out"]
    assert (alerts[0].details["deposited"], alerts[0].details["withdrawn"], alerts[0].details["trades"]) == (
        "8000.0000", "7900.0000", 0,
    )  # fmt: skip


def test_rapid_in_and_out_quiet_when_traded_or_slow(account: BrokerageAccount) -> None:
    other = make_account(status=BrokerageAccount.Status.ACTIVE)
    _completed(account, "8000", ago=timedelta(hours=20))
    for i in range(3):  # real trading in between
        aml_trade_observe(
            trade_id=f"t{i}", symbol="AAPL", qty=Decimal(10), price=Decimal(190), executed_at=timezone.now(),
            buy_account=account, sell_account=other,
        )  # fmt: skip
    assert aml_transfer_evaluate(transfer=_completed(account, "7900", direction=OUT)) == []
    slow = make_account(status=BrokerageAccount.Status.ACTIVE)
    _completed(slow, "8000", ago=timedelta(days=10))
    assert aml_transfer_evaluate(transfer=_completed(slow, "7900", direction=OUT)) == []


def _kyc(account: BrokerageAccount, *, tax_digest: str = "", address: str = "") -> None:
    KycApplication.objects.create(account=account, tax_id_digest=tax_digest, address_key=address)


@pytest.mark.parametrize(
    "link",
    [
        pytest.param("shared_owner", id="same-tax-id-digest"),
        pytest.param("shared_address", id="same-address"),
        pytest.param("shared_device", id="same-device"),
        pytest.param("same_account", id="self-trade"),
    ],
)
def test_wash_trade_between_linked_accounts(link: str) -> None:
    a = make_account(status=BrokerageAccount.Status.ACTIVE)
    b = a if link == "same_account" else make_account(status=BrokerageAccount.Status.ACTIVE)
    if link == "shared_owner":
        _kyc(a, tax_digest="d1")
        _kyc(b, tax_digest="d1")
    elif link == "shared_address":
        _kyc(a, address="1 main st springfield 12345 usa")
        _kyc(b, address="1 main st springfield 12345 usa")
    elif link == "shared_device":
        AccountDevice.objects.create(account=a, device_key="ip:198.51.100.9")
        AccountDevice.objects.create(account=b, device_key="ip:198.51.100.9")
    alerts = aml_trade_observe(
        trade_id="T1", symbol="XYZ", qty=Decimal(100), price=Decimal("12.5"), executed_at=timezone.now(),
        buy_account=a, sell_account=b,
    )  # fmt: skip
    assert {al.rule for al in alerts} == {"wash_trade"}
    assert len(alerts) == (1 if link == "same_account" else 2)
    assert alerts[0].details["links"] == [link]


def test_wash_trade_quiet_between_unrelated_accounts() -> None:
    a, b = (make_account(status=BrokerageAccount.Status.ACTIVE) for _ in range(2))
    _kyc(a, tax_digest="d1", address="1 main st")
    _kyc(b, tax_digest="d2", address="2 elm st")
    AccountDevice.objects.create(account=a, device_key="ip:198.51.100.9")
    AccountDevice.objects.create(account=b, device_key="ip:198.51.100.10")
    alerts = aml_trade_observe(
        trade_id="T2", symbol="XYZ", qty=Decimal(100), price=Decimal("12.5"), executed_at=timezone.now(),
        buy_account=a, sell_account=b,
    )  # fmt: skip
    assert alerts == []


def _age(account: BrokerageAccount, days: int) -> None:
    BrokerageAccount.objects.filter(pk=account.pk).update(created_at=timezone.now() - timedelta(days=days))
    account.refresh_from_db()


def test_dormant_account_sudden_activity(account: BrokerageAccount) -> None:
    _age(account, 400)
    _completed(account, "100", ago=timedelta(days=200))
    alerts = aml_transfer_evaluate(transfer=_completed(account, "6000"))
    assert _rules(alerts) == ["dormant_activity"]


@pytest.mark.parametrize(
    ("created_days", "last_days", "amount"),
    [
        pytest.param(400, 30, "6000", id="recently-active"),
        pytest.param(20, None, "6000", id="new-account"),
        pytest.param(400, 200, "100", id="small-amount"),
    ],
)
def test_dormant_quiet_on_benign(
    account: BrokerageAccount, created_days: int, last_days: int | None, amount: str
) -> None:
    _age(account, created_days)
    if last_days is not None:
        _completed(account, "100", ago=timedelta(days=last_days))
    assert aml_transfer_evaluate(transfer=_completed(account, amount)) == []


def test_alert_is_raised_once_and_joins_one_case(account: BrokerageAccount) -> None:
    transfer = _completed(account, "12000")
    assert len(aml_transfer_evaluate(transfer=transfer)) == 1
    assert aml_transfer_evaluate(transfer=transfer) == []  # re-evaluation (redelivery) raises nothing new
    aml_transfer_evaluate(transfer=_completed(account, "15000"))
    case = AmlCase.objects.get(account=account)
    assert case.alerts.count() == 2


def test_thresholds_are_versioned_by_effective_date(account: BrokerageAccount) -> None:
    v1 = AmlThresholdSet.objects.get(version=1)
    fields = {
        f.name: getattr(v1, f.name)
        for f in AmlThresholdSet._meta.fields
        if f.name not in ("id", "created_at")
    }
    AmlThresholdSet.objects.create(**{**fields, "version": 2, "large_cash_amount": Decimal(5000),
                                      "effective_from": timezone.now() - timedelta(hours=1)})  # fmt: skip
    AmlThresholdSet.objects.create(**{**fields, "version": 3, "large_cash_amount": Decimal(1),
                                      "effective_from": timezone.now() + timedelta(days=30)})  # fmt: skip
    alerts = aml_transfer_evaluate(transfer=_completed(account, "6000"))
    assert [(a.rule, a.thresholds.version) for a in alerts] == [("large_cash_deposit", 2)]


def test_case_work_and_sar_draft(account: BrokerageAccount) -> None:
    KycApplication.objects.create(
        account=account, given_name="Emily", family_name="Johnson", tax_id="123456789"
    )
    transfer = _completed(account, "12000")
    aml_transfer_evaluate(transfer=transfer)
    case = AmlCase.objects.get(account=account)
    officer = make_staff()
    aml_case_assign(case=case, assignee=officer, actor=officer)
    aml_case_note_add(case=case, author=officer, body="source of funds unclear")
    case.sar_narrative = "Large cash deposit inconsistent with profile."
    case.save(update_fields=["sar_narrative"])
    draft = sar_draft(case)
    assert draft["subject"]["name"] == "Emily Johnson"
    assert draft["subject"]["tax_id"] == "***-**-6789"
    assert [a["rule"] for a in draft["activity"]] == ["large_cash_deposit"]
    assert draft["transactions"][0]["transfer_id"] == str(transfer.pk)
    assert draft["total_amount"] == "12000.0000"
    rows = list(csv.reader(io.StringIO(sar_draft_csv([case]))))
    assert rows[0][:5] == ["case_id", "account_number", "subject_name", "tax_id", "rule"]
    assert rows[1][2:5] == ["Emily Johnson", "***-**-6789", "large_cash_deposit"]
    assert "123456789" not in sar_draft_csv([case])
    closed = aml_case_close(
        case=case, actor=officer, disposition="sar_filed", sar_narrative=case.sar_narrative
    )
    assert (closed.status, closed.disposition) == ("closed", "sar_filed")
    actions = set(AuditRecord.objects.filter(target_id=str(case.pk)).values_list("action", flat=True))
    assert actions == {"aml.case_assigned", "aml.case_note_added", "aml.case_closed"}


def test_completed_deposit_through_the_simulator_runs_the_rules(account: BrokerageAccount) -> None:
    from apps.kyc.services.transfers import transfer_create
    from apps.kyc.tasks import transfer_step

    transfer = transfer_create(
        account=account, actor=account.owner, direction=IN, type="wire", amount=Decimal(10000)
    )
    transfer_step(str(transfer.pk), "QUEUED")
    transfer_step(str(transfer.pk), "PENDING")
    assert list(AmlAlert.objects.filter(account=account).values_list("rule", flat=True)) == [
        "large_cash_deposit"
    ]
