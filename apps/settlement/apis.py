"""Thin API views of the settlement app (reads only; the ledger is written by services)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.permissions import HasScope
from apps.accounts.selectors import account_for_user
from apps.core.errors import NotFound
from apps.core.fields import StrictDecimalField
from apps.settlement.activities import (
    ACTIVITY_TYPES,
    MAX_PAGE_SIZE,
    ActivityQuery,
    activities_page,
    activity_render,
)
from apps.settlement.portfolio import portfolio_history


class ActivitiesApi(APIView):
    """GET /v2/account/activities and GET /v2/account/activities/{activity_type} (cursor paging)."""

    permission_classes = [HasScope("read")]

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

    class OutputSerializer(serializers.Serializer[Any]):
        timestamp = serializers.ListField(child=serializers.IntegerField())
        equity = serializers.ListField(child=StrictDecimalField(decimal_places=2))
        profit_loss = serializers.ListField(child=StrictDecimalField(decimal_places=2))
        profit_loss_pct = serializers.ListField(child=StrictDecimalField(decimal_places=6))
        base_value = StrictDecimalField(decimal_places=2)
        timeframe = serializers.CharField()

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
