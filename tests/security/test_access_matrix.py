"""Access control, generated from the URL conf: user B with user A's ids on every object route and verb.

Each cell: B's request answers 404 with an error ``code`` and the whole database is unchanged (every table's
rows hashed before and after, ``security.dbstate``), while A reaches the same object (so the id was real).
Also: B's list endpoints never show A's ids; protected fields sent by a customer (mass assignment) are ignored
or refused; a customer on the staff pages is refused, and the refusal is logged.
"""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.contrib import admin
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import ApiKey, User
from apps.kyc.models import KycApplication, Transfer
from apps.orders.models import Order
from apps.settlement.models import JournalEntry
from apps.settlement.selectors import cash_balances
from apps.settlement.services import fill_settle_trade_date, shares_deposit_post
from apps.settlement.types import FillData
from security.dbstate import db_fingerprint, fingerprint_diff
from security.matrix import (
    NON_OBJECT_PARAMS,
    OWNED_PARAMS,
    QUERY_OBJECT_ROUTES,
    VALID_BODIES,
    list_routes,
)
from tests.accounts.test_object_access import Route, object_routes
from tests.security.conftest import World

pytestmark = pytest.mark.django_db

A_ONLY_SYMBOL = "MSFT"


def _cells() -> list[Any]:
    """Every verb of every route with an owned object parameter (a filter-only route has no A object to try:
    ``test_b_typed_activities_never_show_a_fill`` covers the one there is)."""
    return [
        pytest.param(route, method, id=f"{method.upper()} {route.route}")
        for route in object_routes()
        if any(name not in NON_OBJECT_PARAMS for _, name in route.params)
        for method in route.methods
    ]


def test_every_object_parameter_is_classified() -> None:
    unclassified = (
        {name for route in object_routes() for _, name in route.params}
        - set(OWNED_PARAMS)
        - set(NON_OBJECT_PARAMS)
    )
    assert unclassified == set(), "classify these path parameters in security.matrix"


def _a_ids(world: World) -> dict[str, str]:
    from tests.orders.factories import asset_create

    asset_create(symbol=A_ONLY_SYMBOL)
    with transaction.atomic():
        shares_deposit_post(
            account=world.a.account,
            symbol=A_ONLY_SYMBOL,
            qty=Decimal("3"),
            cost_basis=Decimal("300"),
            transfer_id=f"sec-{uuid.uuid4()}",
        )
        # A real fill of A's (its confirmation is an owned document): a sale of one of those shares.
        fill_settle_trade_date(
            fill=FillData(
                fill_id=f"sec-fill-{uuid.uuid4().hex[:12]}",
                order_id=world.a.order_id,
                account_id=str(world.a.account.pk),
                symbol=A_ONLY_SYMBOL,
                side="sell",
                qty=Decimal("1"),
                price=Decimal("101.25"),
                filled_at=timezone.now(),
                liquidity="taker",
            )
        )
    fill_id = JournalEntry.objects.get(
        account=world.a.account, entry_type=JournalEntry.EntryType.FILL
    ).source_id
    return {
        "key_id": world.a.key.key_id,
        "order_id": world.a.order_id,
        "transfer_id": world.a.transfer_id,
        "symbol": A_ONLY_SYMBOL,
        "fill_id": fill_id,
    }


def _url(route: Route, ids: dict[str, str]) -> str | None:
    url = "/" + route.route
    for converter, name in route.params:
        if name not in ids:
            return None
        url = url.replace(f"<{converter}:{name}>", ids[name]).replace(f"<{name}>", ids[name])
    return url


def _call(client: APIClient, method: str, url: str, body: dict[str, Any] | None) -> Any:
    # No Idempotency-Key: a keyed request stores the caller's own (refused) answer for replay, a legitimate write.
    return getattr(client, method)(url, body or {}, format="json")


@pytest.mark.parametrize(("route", "method"), _cells())
def test_b_with_a_ids_is_404_and_changes_nothing(world: World, route: Route, method: str) -> None:
    ids = _a_ids(world)
    url = _url(route, ids)
    assert url is not None, f"no id of A's for {route.route}: give the fixture one"
    if "get" in route.methods:
        assert world.a.client.get(url).status_code == 200, "A must reach A's own object"
    before = db_fingerprint()

    response = _call(world.b.client, method, url, VALID_BODIES.get((route.route, method)))

    assert response.status_code == 404, (method, url, response.content)
    assert isinstance(response.json()["code"], int)
    assert fingerprint_diff(before, db_fingerprint()) == []


def test_b_typed_activities_never_show_a_fill(world: World) -> None:
    ids = _a_ids(world)
    a_feed = world.a.client.get("/v2/account/activities/FILL")
    assert a_feed.status_code == 200
    assert [a["order_id"] for a in a_feed.json()] == [world.a.order_id]  # A sees A's fill
    b_feed = world.b.client.get("/v2/account/activities/FILL")
    assert (b_feed.status_code, b_feed.json()) == (200, [])
    assert ids["fill_id"] not in b_feed.content.decode()


@pytest.mark.parametrize(("path", "param"), list(QUERY_OBJECT_ROUTES.items()))
def test_b_with_a_query_ids_is_404(world: World, path: str, param: str) -> None:
    order = Order.objects.get(pk=world.a.order_id)
    value = {"client_order_id": order.client_order_id}[param]
    assert world.a.client.get(path, {param: value}).status_code == 200
    response = world.b.client.get(path, {param: value})
    assert response.status_code == 404
    assert isinstance(response.json()["code"], int)


@pytest.mark.parametrize("route", list_routes())
def test_b_lists_never_show_a_ids(world: World, route: str) -> None:
    a = world.a
    secrets = {a.order_id, a.transfer_id, a.key.key_id, str(a.account.pk), a.account.account_number}
    text = world.b.client.get("/" + route).content.decode()
    assert [s for s in secrets if s in text] == []


# ------------------------------------------------------------------------------------------ mass assignment


def test_order_protected_fields_are_ignored(world: World) -> None:
    b = world.b
    response = b.client.post(
        "/v2/orders",
        {
            "symbol": "AAPL", "qty": "1", "side": "buy", "type": "limit", "time_in_force": "day",
            "limit_price": "90", "status": "filled", "filled_qty": "1", "filled_avg_price": "1",
            "account_id": str(world.a.account.pk), "id": str(uuid.uuid4()), "created_at": "2000-01-01T00:00:00Z",
        },
        format="json",
    )  # fmt: skip
    assert response.status_code in (200, 400, 422), response.content
    if response.status_code == 200:
        order = Order.objects.get(pk=response.json()["id"])
        assert (order.account_id, order.filled_qty, order.status != "filled") == (
            b.account.pk,
            Decimal(0),
            True,
        )
        assert order.created_at.year == 2026


def test_replace_protected_fields_are_ignored(world: World) -> None:
    a = world.a
    response = a.client.patch(
        f"/v2/orders/{a.order_id}",
        {"limit_price": "91", "status": "filled", "filled_qty": "1", "account_id": str(world.b.account.pk)},
        format="json",
    )
    assert response.status_code in (200, 400, 422), response.content
    if response.status_code == 200:
        order = Order.objects.get(pk=response.json()["id"])
        assert (order.account_id, order.filled_qty, order.status != "filled") == (
            a.account.pk,
            Decimal(0),
            True,
        )


def test_transfer_protected_fields_are_ignored(world: World) -> None:
    b = world.b
    cash_before = cash_balances(b.account)
    response = b.client.post(
        "/v1/transfers",
        {
            "direction": "INCOMING", "type": "ach", "amount": "1000", "status": "COMPLETE",
            "account_id": str(world.a.account.pk), "requires_approval": False, "completed_at": "2026-01-01T00:00:00Z",
        },
        format="json",
    )  # fmt: skip
    assert response.status_code in (200, 400, 422), response.content
    if response.status_code == 200:
        transfer = Transfer.objects.get(pk=response.json()["id"])
        assert (transfer.account_id, transfer.status != "COMPLETE", transfer.completed_at) == (
            b.account.pk,
            True,
            None,
        )
    assert cash_balances(b.account) == cash_before


def test_kyc_status_cannot_be_self_approved(world: World) -> None:
    b = world.b
    response = b.client.post(
        "/v1/accounts/kyc",
        {
            "status": "APPROVED", "kyc_status": "APPROVED", "account_status": "ACTIVE",
            "identity": {"given_name": "Bob", "kyc_status": "APPROVED", "status": "APPROVED"},
        },
        format="json",
    )  # fmt: skip
    assert response.status_code in (200, 400, 422), response.content
    application = KycApplication.objects.filter(account=b.account).first()
    assert application is None or application.status != KycApplication.Status.APPROVED


def test_register_cannot_make_staff() -> None:
    email = f"mass-{uuid.uuid4().hex[:8]}@example.com"
    response = APIClient().post(
        "/v1/auth/register",
        {"email": email, "password": "a long enough passphrase 123", "is_staff": True, "is_superuser": True},
        format="json",
    )
    assert response.status_code in (201, 400, 422), response.content
    user = User.objects.filter(email=email).first()
    assert user is None or (user.is_staff, user.is_superuser) == (False, False)


def test_api_key_owner_and_id_cannot_be_chosen(world: World) -> None:
    a = world.a
    response = a.client.post(
        "/v1/api-keys",
        {
            "name": "x",
            "scopes": ["read"],
            "key_id": "CHOSENKEYID",
            "owner": str(world.b.user.pk),
            "secret": "s",
        },
        format="json",
    )
    assert response.status_code in (201, 400, 422), response.content
    assert not ApiKey.objects.filter(key_id="CHOSENKEYID").exists()
    assert set(ApiKey.objects.filter(owner=world.b.user).values_list("key_id", flat=True)) == {
        world.b.key.key_id
    }


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_account_balance_has_no_write_verb(world: World, method: str) -> None:
    before = db_fingerprint()
    response = _call(world.a.client, method, "/v2/account", {"cash": "1000000000", "status": "ACTIVE"})
    assert response.status_code == 405
    assert fingerprint_diff(before, db_fingerprint()) == []


# ------------------------------------------------------------------------------------------------ staff pages


def _admin_urls() -> list[str]:
    urls = [reverse("admin:index")]
    for model in admin.site._registry:
        meta = model._meta
        urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
    return urls


def test_customer_on_staff_pages_is_refused_and_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    client = APIClient()
    client.force_login(world.b.user)
    urls = _admin_urls()
    assert len(urls) > 5
    before = db_fingerprint()
    with caplog.at_level(logging.WARNING):
        for url in urls:
            for method in ("get", "post"):
                response = getattr(client, method)(url)
                assert response.status_code in (302, 403), (method, url, response.status_code)
                if response.status_code == 302:
                    assert response["Location"].startswith(reverse("admin:login")), url
    assert fingerprint_diff(before, db_fingerprint()) == []
    refused = [r for r in caplog.records if "admin access refused" in r.getMessage()]
    assert len(refused) == 2 * len(urls)
