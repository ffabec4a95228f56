"""POST/GET /v1/accounts/kyc against the real database: checks, decisions, sanctions evidence, masking."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from apps.accounts.models import AuditRecord, BrokerageAccount
from apps.core.models import StoredEvent
from apps.kyc.models import KycApplication, KycDocument, SanctionsScreening
from tests.kyc.factories import PDF, application_payload, make_account

pytestmark = pytest.mark.django_db(transaction=False)
URL = "/v1/accounts/kyc"


def _submit(api: APIClient, body: dict[str, Any], key: str | None = None) -> Any:
    return api.post(URL, body, format="json", headers={"Idempotency-Key": key} if key else None)


@pytest.fixture
def account(api: APIClient) -> BrokerageAccount:
    account = make_account()
    api.force_authenticate(user=account.owner)
    return account


def test_clean_application_is_auto_approved_and_activated(api: APIClient, account: BrokerageAccount) -> None:
    response = _submit(api, application_payload())
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["status"], body["account_status"], body["missing"], body["review_reasons"]) == (
        "APPROVED", "ACTIVE", [], [],
    )  # fmt: skip
    assert body["tax_id"] == "***-**-6789"
    account.refresh_from_db()
    assert account.status == BrokerageAccount.Status.ACTIVE
    screening = SanctionsScreening.objects.get(application__account=account)
    assert screening.list_version.startswith("2022-01-31@")  # version folder plus content hash
    assert (screening.decision, screening.review) == ("clear", "none")
    assert KycDocument.objects.filter(application__account=account, content_type="image/png").count() == 1
    statuses = list(
        AuditRecord.objects.filter(action="account.status_changed", target_id=str(account.pk))
        .order_by("seq")
        .values_list("after__status", flat=True)
    )
    assert statuses == ["SUBMITTED", "APPROVED", "ACTIVE"]
    assert (
        StoredEvent.objects.filter(event_type="kyc.KycApplicationEvaluated", aggregate_id=body["id"]).count()
        == 1
    )


@pytest.mark.parametrize(
    ("given", "family", "dob", "ent_num", "is_alias"),
    [
        pytest.param("Oleg", "Deripaska", "1968-01-02", 24283, False, id="sdn-primary-name"),
        pytest.param("Abbud", "Zumar", "1947-04-19", 2677, True, id="sdn-alias"),
        pytest.param("Олег", "Дерипаска", "1968-01-02", 24283, False, id="sdn-cyrillic-transliteration"),
        pytest.param("أيمن", "الظواهري", "1951-06-19", 2676, False, id="sdn-arabic-script-skeleton"),
        # An exact name is always held, even when the date of birth disagrees with the list.
        pytest.param("Abbud", "Zumar", "1985-04-12", 2677, True, id="sdn-alias-other-dob"),
    ],
)
def test_sanctions_possible_match_is_held_for_review(
    api: APIClient, account: BrokerageAccount, given: str, family: str, dob: str, ent_num: int, is_alias: bool
) -> None:
    response = _submit(api, application_payload(given_name=given, family_name=family, date_of_birth=dob))
    body = response.json()
    assert (response.status_code, body["status"], body["account_status"]) == (
        200,
        "APPROVAL_PENDING",
        "APPROVAL_PENDING",
    )
    assert body["review_reasons"] == ["sanctions_possible_match"]
    screening = SanctionsScreening.objects.get(application__account=account)
    assert (screening.decision, screening.review) == ("possible_match", "open")
    top = screening.best_candidates[0]
    assert (top["ent_num"], top["is_alias"]) == (ent_num, is_alias)
    assert top["score"] >= screening.review_threshold or top["exact_name"]
    # The evidence says which key matched: Arabic script has no short vowels, so only its skeleton can.
    assert (top["matched_by"], top["matched_key"]) == (
        ("skeleton", "ayman zawahiri") if ent_num == 2676 else ("name", top["matched_key"])
    )


def test_pep_disclosure_goes_to_review(api: APIClient, account: BrokerageAccount) -> None:
    body = _submit(api, application_payload(pep=True)).json()
    assert (body["status"], body["review_reasons"]) == ("APPROVAL_PENDING", ["pep_disclosure"])


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        pytest.param({"date_of_birth": "2006-06-04"}, "age", id="seventeen-by-market-date"),
        pytest.param({"tax_id": "666-12-3456"}, "tax_id_format", id="ssn-area-666"),
        pytest.param({"tax_id": "912-34-5678"}, "tax_id_format", id="ssn-area-9xx"),
        pytest.param({"tax_id": "12345678"}, "tax_id_format", id="ssn-eight-digits"),
        pytest.param({"country": "CAN"}, "address_country", id="country-not-served"),
    ],
)
def test_failed_check_requires_action(
    api: APIClient, account: BrokerageAccount, override: dict[str, Any], reason: str
) -> None:
    body = _submit(api, application_payload(**override)).json()
    assert (body["status"], body["account_status"], body["review_reasons"]) == (
        "ACTION_REQUIRED", "ACTION_REQUIRED", [reason],
    )  # fmt: skip


def test_eighteenth_birthday_on_the_market_date_passes(api: APIClient, account: BrokerageAccount) -> None:
    # The fixed market clock says 2024-06-03 in New York.
    assert _submit(api, application_payload(date_of_birth="2006-06-03")).json()["status"] == "APPROVED"


def test_partial_save_lists_what_is_missing_then_completes(api: APIClient, account: BrokerageAccount) -> None:
    full = application_payload()
    first = _submit(api, {"identity": full["identity"]}).json()
    assert first["status"] == "INCOMPLETE"
    assert first["missing"] == [
        "contact.email_address", "contact.phone_number", "contact.street_address", "contact.city",
        "contact.postal_code", "contact.country", "disclosures.is_control_person",
        "disclosures.is_affiliated_exchange_or_finra", "disclosures.is_politically_exposed",
        "disclosures.immediate_family_exposed", "agreements.customer_agreement", "agreements.account_agreement",
    ]  # fmt: skip
    assert api.get(URL).json()["missing"] == first["missing"]
    assert not SanctionsScreening.objects.filter(application__account=account).exists()
    account.refresh_from_db()
    assert account.status == BrokerageAccount.Status.ONBOARDING
    rest = {k: v for k, v in full.items() if k != "identity"}
    assert _submit(api, rest).json()["status"] == "APPROVED"


def test_get_before_any_submission(api: APIClient, account: BrokerageAccount) -> None:
    body = api.get(URL).json()
    assert (body["status"], body["account_status"]) == ("NOT_STARTED", "ONBOARDING")


def test_decided_application_cannot_be_changed(api: APIClient, account: BrokerageAccount) -> None:
    _submit(api, application_payload())
    response = _submit(api, application_payload(given_name="Other"))
    assert (response.status_code, response.json()["error"]) == (409, "kyc_not_editable")
    assert KycApplication.objects.get(account=account).given_name == "Emily"


def test_idempotent_replay_does_not_submit_twice(api: APIClient, account: BrokerageAccount) -> None:
    first = _submit(api, application_payload(), key="kyc-1")
    second = _submit(api, application_payload(), key="kyc-1")
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true"
    assert SanctionsScreening.objects.filter(application__account=account).count() == 1


@pytest.mark.parametrize(
    ("content", "mime", "error"),
    [
        pytest.param(b"GIF89a" + b"0" * 20, "image/gif", "document_type_not_allowed", id="gif-refused"),
        pytest.param(
            b"MZ\x90\x00" + b"0" * 20, "application/pdf", "document_type_not_allowed", id="exe-posing-as-pdf"
        ),
        pytest.param(PDF, "image/png", "document_type_mismatch", id="pdf-declared-png"),
        pytest.param(b"%PDF-" + b"0" * 2048, "application/pdf", "document_too_large", id="over-size-limit"),
    ],
)
def test_documents_are_sniffed_and_size_limited(
    api: APIClient, account: BrokerageAccount, settings: Any, content: bytes, mime: str, error: str
) -> None:
    settings.KYC_DOCUMENT_MAX_BYTES = 1024
    body = application_payload(documents=False)
    body["documents"] = [
        {
            "document_type": "identity_verification",
            "content": base64.b64encode(content).decode(),
            "mime_type": mime,
        }
    ]
    response = _submit(api, body)
    assert (response.status_code, response.json()["error"], response.json()["field"]) == (
        422, error, "documents[0].content",
    )  # fmt: skip
    assert not KycApplication.objects.filter(account=account).exists()
    assert KycDocument.objects.count() == 0


def test_tax_id_is_encrypted_at_rest_and_masked_everywhere(
    api: APIClient, account: BrokerageAccount, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        body = _submit(api, application_payload(tax_id="123456789")).json()
    application = KycApplication.objects.get(account=account)
    assert application.tax_id == "123456789"  # the model attribute decrypts
    with connection.cursor() as cursor:
        cursor.execute("SELECT tax_id FROM kyc_kycapplication WHERE id = %s", [application.pk])
        raw = cursor.fetchone()[0]
    assert "123456789" not in raw
    assert raw.startswith("gAAAA")
    assert body["tax_id"] == "***-**-6789"
    assert "123456789" not in str(application)
    assert "123456789" not in caplog.text
    audit_texts = [str(r.before) + str(r.after) for r in AuditRecord.objects.all()]
    assert audit_texts
    assert not any("123456789" in t for t in audit_texts)
    events = StoredEvent.objects.filter(aggregate_id=str(application.pk))
    assert events.exists()
    assert not any(b"123456789" in bytes(e.body) for e in events)


def test_other_customer_cannot_see_my_application(api: APIClient, account: BrokerageAccount) -> None:
    _submit(api, application_payload())
    other = make_account()
    api.force_authenticate(user=other.owner)
    assert api.get(URL).json()["status"] == "NOT_STARTED"


def test_unauthenticated_is_refused(api: APIClient) -> None:
    assert APIClient().get(URL).status_code in (401, 403)
