"""Compliance review: approve/reject/request info, four-eyes sanctions overrides, re-screening, admin, schema."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from apps.accounts.models import AuditRecord, BrokerageAccount
from apps.core.datafiles import shared_data_dir
from apps.core.errors import BusinessRuleViolation, Conflict
from apps.kyc.models import ComplianceHold, KycApplication, SanctionsScreening
from apps.kyc.sanctions import MATCHER_VERSION
from apps.kyc.services import kyc
from tests.kyc.factories import application_payload, make_account, make_staff

pytestmark = pytest.mark.django_db
V2022 = shared_data_dir() / "ofac" / "2022-01-31"
V2024 = shared_data_dir() / "ofac" / "2024-05-03"


def _submitted(**payload: Any) -> KycApplication:
    account = make_account()
    api = APIClient()
    api.force_authenticate(user=account.owner)
    response = api.post("/v1/accounts/kyc", application_payload(**payload), format="json")
    assert response.status_code == 200, response.json()
    return KycApplication.objects.get(account=account)


def _held() -> KycApplication:
    application = _submitted(given_name="Abbud", family_name="Zumar", date_of_birth="1985-04-12")
    assert application.status == "APPROVAL_PENDING"
    return application


def test_sanctions_hit_needs_two_different_officers_before_approval() -> None:
    application = _held()
    first, second = make_staff(), make_staff()
    with pytest.raises(BusinessRuleViolation, match="two officers"):
        kyc.kyc_application_approve(application=application, actor=first)
    screening = application.screenings.get()
    kyc.sanctions_override_request(screening_row=screening, actor=first, reason="DOB and nationality differ")
    with pytest.raises(BusinessRuleViolation) as same:
        kyc.sanctions_override_confirm(screening_row=screening, actor=first)
    assert same.value.error == "four_eyes_violation"
    with pytest.raises(BusinessRuleViolation):
        kyc.kyc_application_approve(application=application, actor=second)
    kyc.sanctions_override_confirm(screening_row=screening, actor=second)
    screening.refresh_from_db()
    assert (screening.review, screening.override_first_by, screening.override_second_by) == (
        "cleared",
        first,
        second,
    )
    approved = kyc.kyc_application_approve(application=application, actor=second)
    assert approved.status == "APPROVED"
    approved.account.refresh_from_db()
    assert approved.account.status == BrokerageAccount.Status.ACTIVE
    actions = list(
        AuditRecord.objects.filter(actor_id__in=[str(first.pk), str(second.pk)])
        .order_by("seq")
        .values_list("action", flat=True)
    )
    assert actions == [
        "kyc.sanctions_override_requested", "kyc.sanctions_override_confirmed", "account.status_changed",
        "account.status_changed", "kyc.application_approved",
    ]  # fmt: skip


def test_confirmed_match_rejects_and_freezes() -> None:
    application = _held()
    officer = make_staff()
    kyc.sanctions_match_confirm(screening_row=application.screenings.get(), actor=officer)
    application.refresh_from_db()
    application.account.refresh_from_db()
    assert (application.status, application.account.status) == ("REJECTED", "REJECTED")
    assert (
        ComplianceHold.objects.filter(account=application.account, kind="freeze", released_at=None).count()
        == 1
    )


def test_request_information_then_resubmit() -> None:
    application = _submitted(pep=True)
    officer = make_staff()
    kyc.kyc_application_request_info(application=application, actor=officer, message="proof of address")
    application.refresh_from_db()
    assert (application.status, application.info_requested) == ("ACTION_REQUIRED", "proof of address")
    api = APIClient()
    api.force_authenticate(user=application.account.owner)
    body = api.post(
        "/v1/accounts/kyc", {"disclosures": {"is_politically_exposed": False}}, format="json"
    ).json()
    assert (body["status"], body["account_status"]) == ("APPROVED", "ACTIVE")


def test_reject_from_queue() -> None:
    application = _submitted(pep=True)
    kyc.kyc_application_reject(application=application, actor=make_staff(), reason="declined")
    application.account.refresh_from_db()
    assert application.account.status == "REJECTED"
    with pytest.raises(Conflict):
        kyc.kyc_application_approve(application=application, actor=make_staff())


def test_rescreen_flags_customers_who_now_match(capsys: pytest.CaptureFixture[str]) -> None:
    # DMITRIEV, Kirill Aleksandrovich (ent 34336) is on the 2024-05-03 list, not on 2022-01-31.
    newly_listed = _submitted(given_name="Kirill", family_name="Dmitriev", date_of_birth="1975-04-12")
    clean = _submitted()
    assert (newly_listed.status, clean.status) == ("APPROVED", "APPROVED")
    call_command("sanctions_rescreen", "--list-dir", str(V2024))
    out = capsys.readouterr().out
    assert "screened 2, skipped 0, new matches 1" in out
    row = SanctionsScreening.objects.get(application=newly_listed, trigger="rescreen")
    assert (row.new_match, row.review, row.best_candidates[0]["ent_num"]) == (True, "open", 34336)
    assert SanctionsScreening.objects.get(application=clean, trigger="rescreen").new_match is False
    holds = list(ComplianceHold.objects.filter(released_at=None).values_list("account_id", "kind"))
    assert holds == [(newly_listed.account_id, "kyc")]
    call_command("sanctions_rescreen", "--list-dir", str(V2024))  # same version again: nothing twice
    assert "screened 0, skipped 2, new matches 0" in capsys.readouterr().out
    # Two officers clear the hit: the re-screen hold is released.
    row_first, row_second = make_staff(), make_staff()
    kyc.sanctions_override_request(screening_row=row, actor=row_first, reason="different person (DOB)")
    kyc.sanctions_override_confirm(screening_row=row, actor=row_second)
    assert not ComplianceHold.objects.filter(released_at=None).exists()


def test_matcher_upgrade_rescreens_under_the_same_list_version(capsys: pytest.CaptureFixture[str]) -> None:
    # History: approved when the matcher could not read Arabic script (matcher "1", same 2022 list).
    application = _submitted()
    assert application.status == "APPROVED"
    KycApplication.objects.filter(pk=application.pk).update(
        given_name="أيمن", family_name="الظواهري", date_of_birth=date(1951, 6, 19)
    )
    SanctionsScreening.objects.filter(application=application).update(matcher_version="1")
    call_command("sanctions_rescreen", "--list-dir", str(V2022))
    assert "screened 1, skipped 0, new matches 1" in capsys.readouterr().out
    row = SanctionsScreening.objects.get(application=application, trigger="rescreen")
    top = row.best_candidates[0]
    assert (row.matcher_version, row.new_match, row.review) == (MATCHER_VERSION, True, "open")
    assert (top["ent_num"], top["matched_by"]) == (2676, "skeleton")
    holds = list(ComplianceHold.objects.filter(released_at=None).values_list("account_id", "kind"))
    assert holds == [(application.account_id, "kyc")]
    call_command("sanctions_rescreen", "--list-dir", str(V2022))  # current matcher, same list: skipped
    assert "screened 0, skipped 1, new matches 0" in capsys.readouterr().out


def test_rescreen_task_uses_the_configured_list(settings: Any) -> None:
    from apps.kyc.tasks import sanctions_rescreen

    settings.SANCTIONS_LIST_DIR = str(V2024)
    _submitted(given_name="Kirill", family_name="Dmitriev", date_of_birth="1975-04-12")
    result = sanctions_rescreen()
    # Held at submit (screened against 2024-05-03 already): skipped, not re-flagged.
    assert (result["screened"], result["new_matches"]) == (0, [])
    assert result["list_version"].startswith("2024-05-03@")


def test_admin_review_queue_renders_evidence_without_tax_id(client: Any) -> None:
    application = _held()
    officer = make_staff(is_superuser=True)
    client.force_login(officer)
    from django_otp.plugins.otp_static.models import (
        StaticDevice,
    )  # the admin requires a verified second factor

    device = StaticDevice.objects.create(user=officer, name="backup")
    session = client.session
    session["otp_device_id"] = device.persistent_id
    session.save()
    response = client.get(f"/admin/kyc/kycapplication/{application.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "ZUMAR, Abbud" in html
    assert "score 85 by name, DOB mismatch" in html  # which key matched: name or (Arabic script) skeleton
    assert "***-**-6789" in html
    assert "123-45-6789" not in html
    assert "identity_verification" in html


def test_openapi_schema_documents_the_endpoints(api: APIClient) -> None:
    response = api.get("/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = (
        response.json()["paths"]
        if response["Content-Type"].startswith("application/vnd.oai.openapi+json")
        else {}
    )
    text = response.content.decode()
    for path in ("/v1/accounts/kyc", "/v1/transfers", "/v1/transfers/{transfer_id}"):
        assert path in (paths or text)
