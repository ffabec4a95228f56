"""Alpaca v2 trading endpoints: orders, positions, assets, clock, calendar. Thin views, one per operation.

Every mutating endpoint runs through ``idempotent_execute`` (``Idempotency-Key`` header). Reads and writes are
scoped to the caller's account: another account's order id is a 404. Input is parsed strictly
(``StrictJSONParser`` + ``StrictDecimalField``); business rules live in ``apps.orders.services``.
"""

from __future__ import annotations

import importlib
import uuid
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.models import BrokerageAccount
from apps.core.errors import NotFound, ValidationError
from apps.core.fields import StrictDecimalField, format_decimal
from apps.core.idempotency import idempotent_execute, owner_of
from apps.core.markettime import alpaca_calendar, alpaca_clock
from apps.core.markettime_config import market_calendar, market_clock
from apps.core.money import PRICE_DECIMAL_PLACES, QTY_DECIMAL_PLACES
from apps.core.schema import NO_CONTENT, decimal_string, error_responses
from apps.core.serializers import ReusedFieldsSerializer
from apps.orders import selectors, services
from apps.orders.models import Order
from apps.orders.presenters import asset_json, order_json
from apps.orders.types import OrderRequest, ReplaceRequest, StopLossSpec, TakeProfitSpec

# Inside the engine's domain (engine.commands: a command outside it is dead-lettered, so an order the API accepted
# would never get its engine answer): 1e8 shares = QTY_E9_MAX, $1e8 a share < PRICE_E4_MAX, $1e11 = NOTIONAL_E4_MAX
# (tests/engine/test_domain.py checks it).
MAX_QTY = Decimal("100000000")
MAX_PRICE = Decimal("100000000")
MAX_NOTIONAL = Decimal("100000000000")


def _optional(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def _scope(scope: str) -> type[BasePermission]:
    """``apps.accounts.permissions.HasScope(scope)``, resolved per request (the accounts app lands in parallel)."""

    class _Scoped(BasePermission):
        def has_permission(self, request: Request, view: Any) -> bool:
            has_scope = _optional("apps.accounts.permissions", "HasScope")
            if has_scope is not None:
                return bool(has_scope(scope)().has_permission(request, view))
            return bool(request.user and request.user.is_authenticated)

    _Scoped.__name__ = f"Scope_{scope}"
    return _Scoped


def account_of(request: Request) -> BrokerageAccount:
    account_for_user = _optional("apps.accounts.selectors", "account_for_user")
    if account_for_user is not None:
        account: BrokerageAccount = account_for_user(request.user)
        return account
    found = BrokerageAccount.objects.filter(owner_id=request.user.pk).first()
    if found is None:
        raise NotFound("no brokerage account", field="account")
    return found


def _price(**kw: Any) -> StrictDecimalField:
    return StrictDecimalField(decimal_places=PRICE_DECIMAL_PLACES, positive=True, max_value=MAX_PRICE, **kw)


def _qty(**kw: Any) -> StrictDecimalField:
    return StrictDecimalField(decimal_places=QTY_DECIMAL_PLACES, positive=True, max_value=MAX_QTY, **kw)


class _Choice(serializers.ChoiceField):
    """A ChoiceField that accepts only the exact string (no ints, no case folding)."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class _TakeProfitInput(serializers.Serializer[Any]):
    limit_price = _price()


class _StopLossInput(serializers.Serializer[Any]):
    stop_price = _price()
    limit_price = _price(required=False, allow_null=True)


def order_request_of(v: dict[str, Any]) -> OrderRequest:
    """The service input from a validated order body (``POST /v2/orders`` and each batch item)."""
    tp, sl = v.get("take_profit"), v.get("stop_loss")
    return OrderRequest(
        symbol=v["symbol"],
        side=v["side"],
        type=v["type"],
        time_in_force=v["time_in_force"],
        qty=v.get("qty"),
        notional=v.get("notional"),
        limit_price=v.get("limit_price"),
        stop_price=v.get("stop_price"),
        trail_price=v.get("trail_price"),
        trail_percent=v.get("trail_percent"),
        extended_hours=v["extended_hours"],
        client_order_id=v.get("client_order_id"),
        order_class=v["order_class"] or "simple",
        take_profit=TakeProfitSpec(limit_price=tp["limit_price"]) if tp else None,
        stop_loss=StopLossSpec(stop_price=sl["stop_price"], limit_price=sl.get("limit_price"))
        if sl
        else None,
    )


# ----------------------------------------------------------------------------------------- response documentation
# Documentation-only serializers: the views answer ``presenters.order_json`` / ``asset_json`` / ``position_json``
# dicts; tests/core/test_openapi_schema.py checks these field lists against real answers.


class _OrderFields(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    client_order_id = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    submitted_at = serializers.DateTimeField()
    filled_at = serializers.DateTimeField(allow_null=True)
    expired_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    canceled_at = serializers.DateTimeField(allow_null=True)
    failed_at = serializers.DateTimeField(allow_null=True)
    replaced_at = serializers.DateTimeField(allow_null=True)
    replaced_by = serializers.UUIDField(allow_null=True)
    replaces = serializers.UUIDField(allow_null=True)
    asset_id = serializers.UUIDField()
    symbol = serializers.CharField()
    asset_class = serializers.CharField()
    notional = decimal_string(allow_null=True)
    qty = decimal_string(allow_null=True)
    filled_qty = decimal_string()
    filled_avg_price = decimal_string(allow_null=True)
    order_class = serializers.CharField()
    order_type = serializers.CharField()
    type = serializers.CharField()
    side = serializers.CharField()
    position_intent = serializers.CharField(allow_null=True)
    time_in_force = serializers.CharField()
    limit_price = decimal_string(allow_null=True)
    stop_price = decimal_string(allow_null=True)
    status = serializers.CharField()
    extended_hours = serializers.BooleanField()
    trail_percent = decimal_string(allow_null=True)
    trail_price = decimal_string(allow_null=True)
    hwm = decimal_string(allow_null=True)


@extend_schema_serializer(component_name="OrderLeg")
class OrderLegOutputSerializer(_OrderFields):
    legs = serializers.ListField(
        child=serializers.DictField(), allow_null=True, help_text="always null on a leg"
    )


@extend_schema_serializer(component_name="Order")
class OrderOutputSerializer(_OrderFields):
    """Alpaca's ``Order`` (``apps.orders.presenters.order_json``)."""

    legs = OrderLegOutputSerializer(many=True, allow_null=True)


@extend_schema_serializer(component_name="OrderDryRun")
class OrderDryRunOutputSerializer(serializers.Serializer[Any]):
    dry_run = serializers.BooleanField()
    accepted = serializers.BooleanField()
    order = OrderOutputSerializer()
    hold = decimal_string()


@extend_schema_serializer(component_name="OrderCancelFailure")
class _MessageOutput(serializers.Serializer[Any]):
    message = serializers.CharField()


@extend_schema_serializer(component_name="OrderCancelResult")
class OrderCancelResultSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    status = serializers.IntegerField()
    body = PolymorphicProxySerializer(
        component_name="OrderOrCancelFailure",
        serializers=[OrderOutputSerializer, _MessageOutput],
        resource_type_field_name=None,
    )


@extend_schema_serializer(component_name="PositionCloseResult")
class PositionCloseResultSerializer(serializers.Serializer[Any]):
    symbol = serializers.CharField()
    status = serializers.IntegerField()
    body = OrderOutputSerializer()


@extend_schema_serializer(component_name="Position")
class PositionOutputSerializer(serializers.Serializer[Any]):
    """Alpaca's ``Position`` (``position_json``)."""

    asset_id = serializers.UUIDField()
    symbol = serializers.CharField()
    exchange = serializers.CharField()
    asset_class = serializers.CharField()
    asset_marginable = serializers.BooleanField()
    avg_entry_price = decimal_string()
    qty = decimal_string()
    qty_available = decimal_string()
    side = serializers.ChoiceField(choices=["long", "short"])
    market_value = decimal_string()
    cost_basis = decimal_string()
    unrealized_pl = decimal_string()
    unrealized_plpc = decimal_string()
    unrealized_intraday_pl = decimal_string()
    unrealized_intraday_plpc = decimal_string()
    current_price = decimal_string()
    lastday_price = decimal_string()
    change_today = decimal_string()


# ``class`` is a keyword, hence type() (Alpaca's ``Asset``, ``presenters.asset_json``).
AssetOutputSerializer: type[serializers.Serializer[Any]] = extend_schema_serializer(component_name="Asset")(
    type(
        "AssetOutputSerializer",
        (serializers.Serializer,),
        {
            "id": serializers.UUIDField(),
            "class": serializers.CharField(),
            "exchange": serializers.CharField(),
            "symbol": serializers.CharField(),
            "name": serializers.CharField(),
            "status": serializers.CharField(),
            "tradable": serializers.BooleanField(),
            "marginable": serializers.BooleanField(),
            "shortable": serializers.BooleanField(),
            "easy_to_borrow": serializers.BooleanField(),
            "fractionable": serializers.BooleanField(),
            "min_order_size": decimal_string(),
            "min_trade_increment": decimal_string(),
            "price_increment": decimal_string(),
            "attributes": serializers.ListField(child=serializers.CharField()),
            "reference_price": decimal_string(allow_null=True),
        },
    )
)


@extend_schema_serializer(component_name="Clock")
class ClockOutputSerializer(serializers.Serializer[Any]):
    timestamp = serializers.DateTimeField()
    is_open = serializers.BooleanField()
    next_open = serializers.DateTimeField()
    next_close = serializers.DateTimeField()


@extend_schema_serializer(component_name="CalendarDay")
class CalendarDayOutputSerializer(serializers.Serializer[Any]):
    date = serializers.DateField()
    open = serializers.RegexField(r"^[0-2][0-9]:[0-5][0-9]$", help_text="HH:MM, exchange wall clock")
    close = serializers.RegexField(r"^[0-2][0-9]:[0-5][0-9]$", help_text="HH:MM, exchange wall clock")
    session_open = serializers.RegexField(r"^[0-2][0-9][0-5][0-9]$", help_text="HHMM, extended hours")
    session_close = serializers.RegexField(r"^[0-2][0-9][0-5][0-9]$", help_text="HHMM, extended hours")
    settlement_date = serializers.DateField()


ORDER_NOT_FOUND = error_responses(e404="no such order of the caller's account")


class OrderCreateApi(APIView):
    permission_classes = [_scope("trade")]

    @extend_schema_serializer(component_name="OrderCreate")
    class InputSerializer(ReusedFieldsSerializer):
        symbol = serializers.RegexField(r"^[A-Za-z][A-Za-z0-9.]{0,15}$")
        qty = _qty(required=False, allow_null=True)
        notional = StrictDecimalField(
            decimal_places=2, positive=True, max_value=MAX_NOTIONAL, required=False, allow_null=True
        )
        side = _Choice(choices=Order.Side.choices)
        type = _Choice(choices=Order.Type.choices)
        time_in_force = _Choice(choices=Order.TimeInForce.choices)
        limit_price = _price(required=False, allow_null=True)
        stop_price = _price(required=False, allow_null=True)
        trail_price = _price(required=False, allow_null=True)
        trail_percent = StrictDecimalField(decimal_places=2, positive=True, required=False, allow_null=True)
        extended_hours = serializers.BooleanField(required=False, default=False)
        client_order_id = serializers.CharField(
            required=False, allow_null=True, max_length=128, trim_whitespace=False
        )
        order_class = _Choice(choices=[*Order.OrderClass.choices, ("", "")], required=False, default="simple")
        take_profit = _TakeProfitInput(required=False, allow_null=True)
        stop_loss = _StopLossInput(required=False, allow_null=True)

        def validate_extended_hours(self, value: Any) -> bool:
            if not isinstance(self.initial_data.get("extended_hours", False), bool | None):
                raise serializers.ValidationError("must be a boolean")
            return bool(value)

    @extend_schema(
        operation_id="orders_create",
        request=InputSerializer,
        parameters=[
            OpenApiParameter(
                "dry_run", str, description="`true` or `1`: validate and price the order, change nothing"
            )
        ],
        responses={
            200: PolymorphicProxySerializer(
                component_name="OrderSubmitResult",
                serializers=[OrderOutputSerializer, OrderDryRunOutputSerializer],
                resource_type_field_name=None,
            )
        },
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        v = serializer.validated_data
        data = order_request_of(v)
        dry_run = request.query_params.get("dry_run") in ("true", "1")
        account = account_of(request)

        def operation() -> Response:
            order = services.order_submit(account=account, data=data, dry_run=dry_run)
            body = order_json(order, getattr(order, "pending_legs", []))
            if dry_run:
                return Response(
                    {
                        "dry_run": True,
                        "accepted": True,
                        "order": body,
                        "hold": format_decimal(order.reserved_amount),
                    },
                    status=200,
                )
            return Response(body, status=200)

        if dry_run:
            return operation()  # changes nothing, so no idempotency record either
        return idempotent_execute(request, operation, owner=owner_of(request))


class _ListQuery(serializers.Serializer[Any]):
    status = _Choice(
        choices=[("open", "open"), ("closed", "closed"), ("all", "all")], required=False, default="open"
    )
    limit = serializers.IntegerField(
        min_value=1, max_value=selectors.MAX_LIST_LIMIT, required=False, default=50
    )
    after = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    direction = _Choice(choices=[("asc", "asc"), ("desc", "desc")], required=False, default="desc")
    symbols = serializers.CharField(required=False, default="")
    side = _Choice(choices=Order.Side.choices, required=False)
    nested = serializers.BooleanField(required=False, default=False)


class OrdersApi(OrderCreateApi):
    """``/v2/orders``: POST places, GET lists, DELETE cancels every open order (207)."""

    def get_permissions(self) -> list[BasePermission]:
        return [_scope("read" if self.request.method == "GET" else "trade")()]

    @extend_schema(operation_id="orders_list", responses={200: OrderOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        q = _ListQuery(data=request.query_params.dict())
        q.is_valid(raise_exception=True)
        v = q.validated_data
        orders = selectors.order_list(
            account=account_of(request),
            status=v["status"],
            limit=v["limit"],
            after=v.get("after"),
            until=v.get("until"),
            direction=v["direction"],
            symbols=[s for s in v["symbols"].split(",") if s],
            side=v.get("side"),
            nested=v["nested"],
        )
        return Response([order_json(o) if v["nested"] else order_json(o, []) for o in orders])

    @extend_schema(
        operation_id="orders_cancel_all",
        responses={
            207: OpenApiResponse(
                OrderCancelResultSerializer(many=True),
                description="one result per open order (Alpaca's multi-status)",
            )
        },
    )
    def delete(self, request: Request) -> Response:
        account = account_of(request)

        def operation() -> Response:
            results = services.orders_cancel_all(account=account)
            body = [
                {
                    "id": str(o.id),
                    "status": st,
                    "body": order_json(o, []) if err is None else {"message": err},
                }
                for o, st, err in results
            ]
            return Response(body, status=207)

        return idempotent_execute(request, operation, owner=owner_of(request))


def _order_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError as exc:
        raise NotFound("order not found", field="order_id") from exc


class OrderDetailApi(APIView):
    """``/v2/orders/{order_id}``: GET, PATCH (replace), DELETE (cancel: 204, or 422 if not cancelable)."""

    def get_permissions(self) -> list[BasePermission]:
        return [_scope("read" if self.request.method == "GET" else "trade")()]

    @extend_schema_serializer(component_name="OrderReplace")
    class ReplaceInputSerializer(serializers.Serializer[Any]):
        qty = _qty(required=False, allow_null=True)
        time_in_force = _Choice(choices=Order.TimeInForce.choices, required=False, allow_null=True)
        limit_price = _price(required=False, allow_null=True)
        stop_price = _price(required=False, allow_null=True)
        trail = StrictDecimalField(decimal_places=4, positive=True, required=False, allow_null=True)
        client_order_id = serializers.CharField(
            required=False, allow_null=True, max_length=128, trim_whitespace=False
        )

    @extend_schema(operation_id="orders_get", responses={200: OrderOutputSerializer, **ORDER_NOT_FOUND})
    def get(self, request: Request, order_id: str) -> Response:
        order = selectors.order_get(account=account_of(request), order_id=_order_id(order_id))
        return Response(order_json(order))

    @extend_schema(
        operation_id="orders_replace",
        request=ReplaceInputSerializer,
        responses={
            200: OpenApiResponse(OrderOutputSerializer, description="the new order"),
            **ORDER_NOT_FOUND,
        },
    )
    def patch(self, request: Request, order_id: str) -> Response:
        serializer = self.ReplaceInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        v = serializer.validated_data
        data = ReplaceRequest(
            qty=v.get("qty"),
            time_in_force=v.get("time_in_force"),
            limit_price=v.get("limit_price"),
            stop_price=v.get("stop_price"),
            trail=v.get("trail"),
            client_order_id=v.get("client_order_id"),
        )
        account = account_of(request)
        oid = _order_id(order_id)

        def operation() -> Response:
            new = services.order_replace(account=account, order_id=oid, data=data)
            return Response(order_json(new, []), status=200)

        return idempotent_execute(request, operation, owner=owner_of(request))

    @extend_schema(
        operation_id="orders_cancel",
        responses={
            204: NO_CONTENT,
            **ORDER_NOT_FOUND,
            **error_responses(e422="the order is no longer cancelable"),
        },
    )
    def delete(self, request: Request, order_id: str) -> Response:
        account = account_of(request)
        oid = _order_id(order_id)

        def operation() -> Response:
            services.order_cancel(account=account, order_id=oid)
            return Response(status=204)

        return idempotent_execute(request, operation, owner=owner_of(request))


class OrderByClientIdApi(APIView):
    permission_classes = [_scope("read")]

    @extend_schema(
        operation_id="orders_get_by_client_order_id",
        parameters=[OpenApiParameter("client_order_id", str, required=True)],
        responses={200: OrderOutputSerializer, **ORDER_NOT_FOUND},
    )
    def get(self, request: Request) -> Response:
        client_order_id = request.query_params.get("client_order_id")
        if not client_order_id:
            raise ValidationError("client_order_id is required", field="client_order_id", error="required")
        order = selectors.order_get_by_client_order_id(
            account=account_of(request), client_order_id=client_order_id
        )
        return Response(order_json(order))


# ----------------------------------------------------------------------------------------- positions


def _settlement_selectors() -> Any:
    return importlib.import_module("apps.settlement.selectors")


def _valuations(account: BrokerageAccount) -> dict[str, Any]:
    """Settlement's ``PositionValuation`` per symbol: valued at the latest trade (else the reference price)."""
    portfolio = importlib.import_module("apps.settlement.portfolio")
    return {v.symbol: v for v in portfolio.position_valuations(account)}


def position_json(p: Any, v: Any) -> dict[str, Any]:
    """Alpaca's ``Position`` from a ``PositionView`` (quantities) and its ``PositionValuation`` (prices).

    Market value, cost basis and P&L are settlement's (cents, half-even): this view does no arithmetic.
    """
    asset = selectors.asset_get(symbol_or_id=p.symbol)
    return {
        "asset_id": str(asset.id),
        "symbol": p.symbol,
        "exchange": asset.exchange,
        "asset_class": asset.asset_class,
        "asset_marginable": asset.marginable,
        "avg_entry_price": format_decimal(p.avg_entry_price),
        "qty": format_decimal(p.qty),
        "qty_available": format_decimal(p.qty_available),
        "side": "long" if p.qty >= 0 else "short",
        "market_value": format_decimal(v.market_value),
        "cost_basis": format_decimal(p.cost_basis),
        "unrealized_pl": format_decimal(v.unrealized_pl),
        "unrealized_plpc": format_decimal(v.unrealized_plpc),
        "unrealized_intraday_pl": format_decimal(v.unrealized_pl),
        "unrealized_intraday_plpc": format_decimal(v.unrealized_plpc),
        "current_price": format_decimal(v.current_price),
        "lastday_price": format_decimal(v.current_price),
        "change_today": "0",
    }


class PositionsApi(APIView):
    """``/v2/positions``: GET lists; DELETE closes every position by market orders (207)."""

    def get_permissions(self) -> list[BasePermission]:
        return [_scope("read" if self.request.method == "GET" else "trade")()]

    @extend_schema(operation_id="positions_list", responses={200: PositionOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        account = account_of(request)
        views = _settlement_selectors().positions(account)
        valued = _valuations(account)
        return Response([position_json(p, valued[p.symbol]) for p in views if p.qty != 0])

    @extend_schema(
        operation_id="positions_close_all",
        responses={
            207: OpenApiResponse(
                PositionCloseResultSerializer(many=True),
                description="one closing order per position with shares available (Alpaca's multi-status)",
            )
        },
    )
    def delete(self, request: Request) -> Response:
        account = account_of(request)

        def operation() -> Response:
            body = []
            for p in _settlement_selectors().positions(account):
                if p.qty_available <= 0:
                    continue
                order = services.position_close(account=account, symbol=p.symbol, qty=p.qty_available)
                body.append({"symbol": p.symbol, "status": 200, "body": order_json(order, [])})
            return Response(body, status=207)

        return idempotent_execute(request, operation, owner=owner_of(request))


class PositionDetailApi(APIView):
    def get_permissions(self) -> list[BasePermission]:
        return [_scope("read" if self.request.method == "GET" else "trade")()]

    class CloseQuery(serializers.Serializer[Any]):
        qty = _qty(required=False)
        percentage = StrictDecimalField(
            decimal_places=9, positive=True, max_value=Decimal(100), required=False
        )

    @extend_schema(
        operation_id="positions_get",
        responses={200: PositionOutputSerializer, **error_responses(e404="no open position in the symbol")},
    )
    def get(self, request: Request, symbol: str) -> Response:
        account = account_of(request)
        p = _settlement_selectors().position(account, symbol.upper())
        if p is None or p.qty == 0:
            raise NotFound("position not found", field="symbol")
        return Response(position_json(p, _valuations(account)[p.symbol]))

    @extend_schema(
        operation_id="positions_close",
        responses={200: OpenApiResponse(OrderOutputSerializer, description="the closing order")},
    )
    def delete(self, request: Request, symbol: str) -> Response:
        q = self.CloseQuery(data=request.query_params.dict())
        q.is_valid(raise_exception=True)
        account = account_of(request)

        def operation() -> Response:
            order = services.position_close(
                account=account,
                symbol=symbol,
                qty=q.validated_data.get("qty"),
                percentage=q.validated_data.get("percentage"),
            )
            return Response(order_json(order, []), status=200)

        return idempotent_execute(request, operation, owner=owner_of(request))


# ----------------------------------------------------------------------------------------- reference data


class AssetListApi(APIView):
    permission_classes = [_scope("read")]

    @extend_schema(
        operation_id="assets_list",
        parameters=[OpenApiParameter("status", str)],
        responses={200: AssetOutputSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        status = request.query_params.get("status")
        return Response([asset_json(a) for a in selectors.asset_list(status=status)])


class AssetDetailApi(APIView):
    permission_classes = [_scope("read")]

    @extend_schema(
        operation_id="assets_get",
        responses={200: AssetOutputSerializer, **error_responses(e404="unknown symbol or asset id")},
    )
    def get(self, request: Request, symbol: str) -> Response:
        return Response(asset_json(selectors.asset_get(symbol_or_id=symbol)))


class ClockApi(APIView):
    permission_classes = [_scope("read")]

    @extend_schema(operation_id="clock_get", responses={200: ClockOutputSerializer})
    def get(self, request: Request) -> Response:
        return Response(alpaca_clock(market_calendar(), market_clock().now()))


class CalendarApi(APIView):
    permission_classes = [_scope("read")]

    class Query(serializers.Serializer[Any]):
        start = serializers.DateField(required=False)
        end = serializers.DateField(required=False)

    @extend_schema(operation_id="calendar_list", responses={200: CalendarDayOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        q = self.Query(data=request.query_params.dict())
        q.is_valid(raise_exception=True)
        today: date = market_clock().now().date()
        start: date = q.validated_data.get("start") or today
        end: date = q.validated_data.get("end") or start + timedelta(days=30)
        if end < start or (end - start).days > 3660:
            raise ValidationError("end must be on or after start, within 10 years", field="end")
        return Response(alpaca_calendar(market_calendar(), start, end))
