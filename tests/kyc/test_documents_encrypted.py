"""Identity documents are encrypted at rest (MultiFernet, ``FIELD_ENCRYPTION_KEYS``) and served decrypted only to
compliance staff (officers, administrators) through the admin, each access audited; support staff get 403."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import Group
from django.test import Client
from django_otp.plugins.otp_static.models import StaticDevice
from rest_framework.test import APIClient

from apps.accounts.models import AuditRecord, User
from apps.kyc.fields import decrypt_bytes
from apps.kyc.models import KycApplication, KycDocument
from apps.kyc.selectors import kyc_document_content
from tests.kyc.factories import PNG, application_payload, make_account, make_staff

pytestmark = pytest.mark.django_db


def _uploaded() -> KycDocument:
    account = make_account()
    api = APIClient()
    api.force_authenticate(user=account.owner)
    response = api.post("/v1/accounts/kyc", application_payload(), format="json")
    assert response.status_code == 200, response.json()
    return KycDocument.objects.get(application=KycApplication.objects.get(account=account))


def _admin(role: str | None = None, **fields: Any) -> tuple[Client, User]:
    staff = make_staff(**fields)
    if role is not None:
        staff.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(staff)
    device = StaticDevice.objects.create(
        user=staff, name="backup"
    )  # the admin requires a verified 2nd factor
    session = client.session
    session["otp_device_id"] = device.persistent_id
    session.save()
    return client, staff


def test_bytes_on_disk_are_not_the_plaintext() -> None:
    document = _uploaded()
    path = Path(document.file.path)
    on_disk = path.read_bytes()
    assert path.name == f"{document.pk}.png.enc"
    assert PNG not in on_disk
    assert not on_disk.startswith(b"\x89PNG")
    assert len(on_disk) > len(PNG)
    assert decrypt_bytes(on_disk) == PNG
    assert kyc_document_content(document=document) == PNG
    assert (document.size, document.content_type) == (len(PNG), "image/png")


def test_rotated_keys_still_decrypt_old_documents(settings: Any) -> None:
    document = _uploaded()
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *settings.FIELD_ENCRYPTION_KEYS]
    assert kyc_document_content(document=document) == PNG


def test_tampered_file_is_refused() -> None:
    document = _uploaded()
    Path(document.file.path).write_bytes(b"gAAAAA-not-a-token")
    with pytest.raises(ValueError, match="could not be decrypted"):
        kyc_document_content(document=document)


@pytest.mark.parametrize(
    ("role", "superuser"),
    [
        pytest.param("compliance_officer", False, id="compliance-officer"),
        pytest.param("administrator", False, id="administrator"),
        pytest.param(None, True, id="superuser"),
    ],
)
def test_compliance_staff_download_the_decrypted_document(role: str | None, superuser: bool) -> None:
    document = _uploaded()
    client, staff = _admin(role, is_superuser=superuser)
    page = client.get(f"/admin/kyc/kycapplication/{document.application_id}/change/").content.decode()
    url = f"/admin/kyc/kycapplication/document/{document.pk}/"
    assert url in page
    assert document.file.url not in page  # never linked to the stored (encrypted) file
    response = client.get(url)
    assert response.status_code == 200
    assert response.content == PNG
    assert response["Content-Type"] == "image/png"
    assert {"no-store", "private"} <= set(response["Cache-Control"].split(", "))
    assert response["Content-Disposition"] == f'attachment; filename="{document.pk}.png"'
    viewed = AuditRecord.objects.filter(action="kyc.document_viewed")
    assert list(viewed.values_list("actor_id", "target_id")) == [(str(staff.pk), str(document.pk))]


@pytest.mark.parametrize(
    "role", [pytest.param("support", id="support"), pytest.param("operations", id="ops")]
)
def test_other_staff_cannot_download_documents(role: str) -> None:
    document = _uploaded()
    client, _ = _admin(role)
    response = client.get(f"/admin/kyc/kycapplication/document/{document.pk}/")
    assert response.status_code == 403
    assert PNG not in response.content
    assert AuditRecord.objects.filter(action="kyc.document_viewed").count() == 0
