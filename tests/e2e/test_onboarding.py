"""A newcomer's path over HTTP against the live stack, ending in the official SDK.

Sign-up → login (session + CSRF) → KYC (clean: approved and activated) → ACH deposit (the simulated network is
driven step by step) → API key → alpaca-py ``TradingClient.get_account()`` shows the deposited cash.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from alpaca.trading.client import TradingClient

from tests.e2e.conftest import LiveStack, eventually
from tests.kyc.factories import application_payload

EMAIL = "newcomer@e2e.example.com"
PASSWORD = "violet-harbour-lantern-42"


def _csrf(client: httpx.Client) -> dict[str, str]:
    token = client.get("/v1/auth/csrf").json()["csrf_token"]
    return {"X-CSRFToken": token}


def test_sign_up_kyc_deposit_api_key_then_sdk_account(live_stack: LiveStack, django_db_blocker: Any) -> None:
    import importlib

    from django.apps import apps

    from apps.kyc.models import Transfer
    from apps.kyc.tasks import transfer_step

    # Migration-seeded reference data (the AML thresholds) is gone after earlier transactional tests flushed the
    # database; restore it with the migration's own seed function, exactly as a migrated database has it.
    seed_aml = importlib.import_module("apps.kyc.migrations.0002_seed_aml_thresholds").seed
    with django_db_blocker.unblock():
        seed_aml(apps, None)

    with httpx.Client(base_url=live_stack.base_url, timeout=30.0) as web:
        registered = web.post(
            "/v1/auth/register", json={"email": EMAIL, "password": PASSWORD}, headers=_csrf(web)
        )
        assert registered.status_code == 201, registered.text

        login = web.post("/v1/auth/login", json={"email": EMAIL, "password": PASSWORD}, headers=_csrf(web))
        assert login.status_code == 200, login.text

        # Django rotates the CSRF token at login: fetch it again for the session's unsafe requests.
        headers = _csrf(web)
        kyc = web.post("/v1/accounts/kyc", json=application_payload(), headers=headers)
        assert kyc.status_code in (200, 201), kyc.text
        assert kyc.json()["account_status"] == "ACTIVE"

        deposit = web.post(
            "/v1/transfers",
            json={"direction": "INCOMING", "amount": "2500.00", "type": "ach"},
            headers={**headers, "Idempotency-Key": "newcomer-deposit-1"},
        )
        assert deposit.status_code == 200, deposit.text
        transfer_id = deposit.json()["id"]
        with django_db_blocker.unblock():
            # The simulated ACH network, one step at a time (each step is idempotent by its from-status).
            transfer_step(transfer_id, Transfer.Status.QUEUED)
            transfer_step(transfer_id, Transfer.Status.PENDING)
        eventually(
            lambda: web.get(f"/v1/transfers/{transfer_id}").json()["status"] == "COMPLETE",
            what="the deposit to complete",
            stack=live_stack,
        )

        created = web.post(
            "/v1/api-keys", json={"name": "my-bot", "scopes": ["read", "trade"]}, headers=headers
        )
        assert created.status_code == 201, created.text
        key_id, secret = created.json()["key_id"], created.json()["secret"]

    account: Any = TradingClient(key_id, secret, url_override=live_stack.base_url).get_account()
    status = account.status.value if hasattr(account.status, "value") else account.status
    assert str(status) == "ACTIVE"
    assert Decimal(str(account.cash)) == Decimal("2500")
    assert Decimal(str(account.buying_power)) == Decimal("2500")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/v1/accounts/kyc", {}, id="kyc-without-session"),
        pytest.param("/v1/transfers", {"direction": "INCOMING", "amount": "1", "type": "ach"}, id="transfer"),
    ],
)
def test_onboarding_endpoints_refuse_anonymous_callers(
    live_stack: LiveStack, path: str, body: dict[str, Any]
) -> None:
    response = httpx.post(f"{live_stack.base_url}{path}", json=body, timeout=30.0)
    assert response.status_code in (401, 403)
    assert {"code", "message"} <= set(response.json())
