"""Thin API views of the settlement app (the ledger is written by services).

Mutations (cost basis method, lot selection) go through ``idempotent_execute`` (header ``Idempotency-Key``);
every object is looked up within the caller's account, so another customer's id is a 404.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.permissions import HasScope
from apps.accounts.selectors import account_for_user
from apps.core.errors import NotFound, ValidationError
from apps.core.fields import StrictDecimalField
from apps.core.idempotency import idempotent_execute, owner_of
from apps.core.money import QTY_DECIMAL_PLACES
from apps.core.renderers import DecimalSafeJSONRenderer
from apps.core.schema import error_responses, operation_ids_by_route
from apps.orders import selectors as order_selectors
from apps.settlement import selectors, services
from apps.settlement.activities import (
    ACTIVITY_TYPES,
    MAX_PAGE_SIZE,
    ActivityQuery,
    activities_page,
    activity_render,
)
from apps.settlement.documents import confirmation_html, statement_html
from apps.settlement.models import CostBasisMethod
from apps.settlement.portfolio import portfolio_history


# Documentation-only serializers of ``activity_render``'s two shapes (amounts are decimal strings as booked).
@extend_schema_serializer(component_name="TradeActivity")
class _TradeActivityOutput(serializers.Serializer[Any]):
    id = serializers.CharField()
    activity_type = serializers.ChoiceField(choices=["FILL"])
    transaction_time = serializers.DateTimeField()
    type = serializers.ChoiceField(choices=["fill", "partial_fill"])
    price = serializers.CharField()
    qty = serializers.CharField()
    side = serializers.CharField()
    symbol = serializers.CharField()
    leaves_qty = serializers.CharField(allow_null=True)
    order_id = serializers.CharField()
    cum_qty = serializers.CharField()
    order_status = serializers.ChoiceField(choices=["filled", "partially_filled"])


@extend_schema_serializer(component_name="NonTradeActivity")
class _NonTradeActivityOutput(serializers.Serializer[Any]):
    id = serializers.CharField()
    activity_type = serializers.CharField()
    date = serializers.DateField()
    created_at = serializers.DateTimeField()
    net_amount = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    status = serializers.CharField()
    currency = serializers.CharField()
    symbol = serializers.CharField(required=False)
    qty = serializers.CharField(required=False)
    per_share_amount = serializers.CharField(required=False)
    activity_sub_type = serializers.CharField(required=False)


@extend_schema(
    responses={
        200: PolymorphicProxySerializer(
            component_name="Activity",
            serializers=[_TradeActivityOutput, _NonTradeActivityOutput],
            resource_type_field_name=None,
            many=True,
        ),
        **error_responses(e404="unknown activity type"),
    }
)
class ActivitiesApi(APIView):
    """GET /v2/account/activities and GET /v2/account/activities/{activity_type} (cursor paging)."""

    permission_classes = [HasScope("read")]
    schema = operation_ids_by_route(
        {
            "/v2/account/activities": "account_activities_list",
            "/v2/account/activities/{activity_type}": "account_activities_by_type",
        }
    )

    class InputSerializer(serializers.Serializer[Any]):
        activity_types = serializers.CharField(required=False, max_length=200)
        category = serializers.ChoiceField(choices=["trade_activity", "non_trade_activity"], required=False)
        date = serializers.DateField(required=False)
        after = serializers.DateTimeField(required=False)
        until = serializers.DateTimeField(required=False)
        direction = serializers.ChoiceField(choices=["asc", "desc"], required=False, default="desc")
        page_size = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE)
        page_token = serializers.CharField(required=False, max_length=100)

    def get(self, request: Request, activity_type: str | None = None) -> Response:
        data = self.InputSerializer(data=request.query_params)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        if activity_type is not None:
            if activity_type not in ACTIVITY_TYPES:
                raise NotFound(f"unknown activity type {activity_type}")
            types: tuple[str, ...] = (activity_type,)
        elif v.get("activity_types"):
            types = tuple(t.strip().upper() for t in v["activity_types"].split(",") if t.strip())
        else:
            types = ACTIVITY_TYPES
        if v.get("category") == "trade_activity":
            types = tuple(t for t in types if t == "FILL")
        elif v.get("category") == "non_trade_activity":
            types = tuple(t for t in types if t != "FILL")
        account = account_for_user(request.user)
        entries = activities_page(
            account,
            ActivityQuery(
                activity_types=types,
                on_date=v.get("date"),
                after=v.get("after"),
                until=v.get("until"),
                direction=v["direction"],
                page_size=v.get("page_size") or MAX_PAGE_SIZE,
                page_token=v.get("page_token"),
            ),
        )
        return Response([activity_render(e) for e in entries])


class PortfolioHistoryApi(APIView):
    """GET /v2/account/portfolio/history: the daily equity series (Alpaca's ``PortfolioHistory``)."""

    permission_classes = [HasScope("read")]

    class InputSerializer(serializers.Serializer[Any]):
        period = serializers.CharField(required=False, default="1M", max_length=5)
        timeframe = serializers.CharField(required=False, default="1D", max_length=5)
        date_end = serializers.DateField(required=False)
        extended_hours = serializers.BooleanField(required=False)

    @extend_schema_serializer(component_name="PortfolioHistory")
    class OutputSerializer(serializers.Serializer[Any]):
        timestamp = serializers.ListField(child=serializers.IntegerField())
        equity = serializers.ListField(child=StrictDecimalField(decimal_places=2))
        profit_loss = serializers.ListField(child=StrictDecimalField(decimal_places=2))
        profit_loss_pct = serializers.ListField(child=StrictDecimalField(decimal_places=6))
        base_value = StrictDecimalField(decimal_places=2)
        timeframe = serializers.CharField()

    @extend_schema(operation_id="portfolio_history_get", responses={200: OutputSerializer})
    def get(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.query_params)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        history = portfolio_history(
            account_for_user(request.user),
            period=v["period"],
            timeframe=v["timeframe"],
            date_end=v.get("date_end"),
        )
        return Response(self.OutputSerializer(history).data)


class _HtmlPassthrough(BaseRenderer):
    """Lets a client that asks for text/html be served; error bodies stay JSON text."""

    media_type = "text/html"
    format = "html"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        if isinstance(data, bytes):
            return data
        return json.dumps(data, default=str).encode() if not isinstance(data, str) else data.encode()


DOCUMENT_RENDERERS = [DecimalSafeJSONRenderer, _HtmlPassthrough]
HTML_DOCUMENT = OpenApiResponse(OpenApiTypes.STR, description="an HTML document (errors stay JSON)")


class StatementApi(APIView):
    """GET /v1/accounts/statements?month=YYYY-MM: the caller's monthly statement as an HTML document."""

    permission_classes = [HasScope("read")]
    renderer_classes = DOCUMENT_RENDERERS

    class InputSerializer(serializers.Serializer[Any]):
        # Years 1000-9999: year 0000 is no date and 0001-01's opening balance (the day before) overflows (a 500).
        month = serializers.RegexField(r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])$", max_length=7)

    @extend_schema(
        operation_id="account_statement_get",
        parameters=[InputSerializer],
        responses={(200, "text/html"): HTML_DOCUMENT},
    )
    def get(self, request: Request) -> HttpResponse:
        data = self.InputSerializer(data=request.query_params)
        data.is_valid(raise_exception=True)
        month = data.validated_data["month"]
        html = statement_html(account=account_for_user(request.user), month=month)
        response = HttpResponse(html, content_type="text/html; charset=utf-8")
        response["Content-Disposition"] = f'inline; filename="statement-{month}.html"'
        return response


class ConfirmationApi(APIView):
    """GET /v1/accounts/confirmations/{fill_id}: the trade confirmation of one of the caller's fills."""

    permission_classes = [HasScope("read")]
    renderer_classes = DOCUMENT_RENDERERS

    @extend_schema(
        operation_id="account_confirmation_get",
        responses={(200, "text/html"): HTML_DOCUMENT, **error_responses(e404="no such fill of the caller")},
    )
    def get(self, request: Request, fill_id: str) -> HttpResponse:
        html = confirmation_html(account=account_for_user(request.user), fill_id=fill_id)
        response = HttpResponse(html, content_type="text/html; charset=utf-8")
        response["Content-Disposition"] = 'inline; filename="confirmation.html"'
        return response


# --------------------------------------------------------------------------------------------------------------
# Cost basis: the account's lot relief method, open lots, lot selection for a sell order


def _read_or_trade(request: Request) -> list[Any]:
    return [HasScope("read" if request.method == "GET" else "trade")()]


class CostBasisMethodApi(APIView):
    """GET / PATCH /v1/account/cost-basis: the account's default lot relief method ({"method": "FIFO"}).

    A change applies to sells booked after it; FIFO until the customer chooses another."""

    def get_permissions(self) -> list[Any]:
        return _read_or_trade(self.request)

    @extend_schema_serializer(component_name="CostBasisMethodUpdate")
    class InputSerializer(serializers.Serializer[Any]):
        method = serializers.ChoiceField(choices=CostBasisMethod.choices)

    @extend_schema_serializer(component_name="CostBasisMethod")
    class OutputSerializer(serializers.Serializer[Any]):
        method = serializers.CharField()

    @extend_schema(operation_id="cost_basis_method_get", responses={200: OutputSerializer})
    def get(self, request: Request) -> Response:
        method = selectors.cost_basis_method(account_for_user(request.user))
        return Response(self.OutputSerializer({"method": method}).data)

    # A raw schema: drf-spectacular would document a PATCH body as partial, but ``method`` is required.
    @extend_schema(
        operation_id="cost_basis_method_set",
        request={
            "application/json": {
                "type": "object",
                "properties": {"method": {"type": "string", "enum": CostBasisMethod.values}},
                "required": ["method"],
            }
        },
        responses={200: OutputSerializer},
    )
    def patch(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        method = data.validated_data["method"]
        account = account_for_user(request.user)

        def operation() -> Response:
            setting = services.cost_basis_method_set(
                account=account, method=method, actor=request.user, request=request
            )
            return Response(self.OutputSerializer({"method": setting.method}).data)

        return idempotent_execute(request, operation, owner=owner_of(request))


class PositionLotsApi(APIView):
    """GET /v1/positions/{symbol}/lots: the caller's open tax lots of one symbol, oldest first (404 without any,
    like ``GET /v2/positions/{symbol}``)."""

    permission_classes = [HasScope("read")]

    @extend_schema_serializer(component_name="TaxLot")
    class OutputSerializer(serializers.Serializer[Any]):
        lot_id = serializers.CharField()
        symbol = serializers.CharField()
        acquired_date = serializers.DateField()
        qty = StrictDecimalField(decimal_places=QTY_DECIMAL_PLACES)
        original_qty = StrictDecimalField(decimal_places=QTY_DECIMAL_PLACES)
        cost_basis = StrictDecimalField(decimal_places=4)
        cost_per_share = StrictDecimalField(decimal_places=4)
        selected_qty = StrictDecimalField(decimal_places=QTY_DECIMAL_PLACES)

    @extend_schema(operation_id="position_lots_list", responses={200: OutputSerializer(many=True)})
    def get(self, request: Request, symbol: str) -> Response:
        lots = selectors.open_lots(account_for_user(request.user), symbol.upper())
        if not lots:
            raise NotFound("position does not exist", field="symbol")
        return Response(self.OutputSerializer(lots, many=True).data)


def _own_order(request: Request, raw: str) -> tuple[Any, Any]:
    """The caller's account and order ``raw`` (``NotFound`` for anyone else's or a malformed id), checked before
    the body is read so a stranger learns nothing from validation errors."""
    try:
        order_id = uuid.UUID(raw)
    except ValueError:
        raise NotFound("order not found", field="order_id") from None
    account = account_for_user(request.user)
    return account, order_selectors.order_get(account=account, order_id=order_id)


class LotSelectionApi(APIView):
    """GET / POST /v1/orders/{order_id}/lot-selection: the lots an open sell order relieves first.

    POST {"lots": [{"lot_id": "12", "qty": "5"}]} replaces the selection (an empty list clears it); allowed
    until the order's first fill books, for sell orders only. The account's cost basis method covers any
    quantity not selected. GET answers an empty selection for the caller's orders without one."""

    def get_permissions(self) -> list[Any]:
        return _read_or_trade(self.request)

    @extend_schema_serializer(component_name="LotChoice")
    class ChoiceSerializer(serializers.Serializer[Any]):
        lot_id = serializers.RegexField(r"^[1-9][0-9]{0,17}$", max_length=18)
        qty = StrictDecimalField(decimal_places=QTY_DECIMAL_PLACES, positive=True)

    class InputSerializer(serializers.Serializer[Any]):
        lots = serializers.ListField(allow_empty=True, max_length=200)

    @extend_schema_serializer(component_name="LotSelectionChoice")
    class ChoiceOutputSerializer(serializers.Serializer[Any]):
        lot_id = serializers.CharField()
        qty = StrictDecimalField(decimal_places=QTY_DECIMAL_PLACES)
        remaining = StrictDecimalField(decimal_places=QTY_DECIMAL_PLACES)

    # Documentation only: the request items are ChoiceSerializer's, the answer's are ChoiceOutputSerializer's.
    _doc_request = inline_serializer("LotSelectionUpdate", fields={"lots": ChoiceSerializer(many=True)})
    _doc_output = inline_serializer(
        "LotSelection",
        fields={
            "order_id": serializers.CharField(),
            "symbol": serializers.CharField(),
            "lots": ChoiceOutputSerializer(many=True),
        },
    )

    def _render(self, account: Any, order: Any) -> dict[str, Any]:
        view = selectors.lot_selection(account, str(order.id))
        return {
            "order_id": str(order.id),
            "symbol": order.symbol,
            "lots": self.ChoiceOutputSerializer(view.lots if view else [], many=True).data,
        }

    @extend_schema(operation_id="lot_selection_get", responses={200: _doc_output})
    def get(self, request: Request, order_id: str) -> Response:
        account, order = _own_order(request, order_id)
        return Response(self._render(account, order))

    @extend_schema(operation_id="lot_selection_set", request=_doc_request, responses={200: _doc_output})
    def post(self, request: Request, order_id: str) -> Response:
        account, order = _own_order(request, order_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        choices = self.ChoiceSerializer(data=data.validated_data["lots"], many=True)
        choices.is_valid(raise_exception=True)
        picked = [services.LotChoice(lot_id=int(c["lot_id"]), qty=c["qty"]) for c in choices.validated_data]
        if order.side != "sell":
            raise ValidationError(
                "Lots can be chosen for sell orders only.", field="order_id", error="not_a_sell_order"
            )

        def operation() -> Response:
            services.lot_selection_set(
                account=account, order_id=str(order.id), choices=picked, actor=request.user, request=request
            )
            return Response(self._render(account, order))

        return idempotent_execute(request, operation, owner=owner_of(request))
