"""Thin API views of the settlement app (reads only; the ledger is written by services)."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.permissions import HasScope
from apps.accounts.selectors import account_for_user
from apps.core.errors import NotFound
from apps.core.fields import StrictDecimalField
from apps.core.renderers import DecimalSafeJSONRenderer
from apps.core.schema import error_responses, operation_ids_by_route
from apps.settlement.activities import (
    ACTIVITY_TYPES,
    MAX_PAGE_SIZE,
    ActivityQuery,
    activities_page,
    activity_render,
)
from apps.settlement.documents import confirmation_html, statement_html
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
        month = serializers.RegexField(r"^\d{4}-(0[1-9]|1[0-2])$", max_length=7)

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
