"""``POST /v2/orders/batch`` (our extension, not Alpaca's): up to 1,000 orders, one outcome per order.

Request: ``{"orders": [<the POST /v2/orders body>, ...]}``. Response 207 (multi-status), a list in request order:
``{"status": 201, "body": <order>}`` for a new order, ``{"status": 200, "body": <order>}`` for an item whose
``client_order_id`` names an order with the same terms (stored earlier or earlier in the batch), or
``{"status": 4xx, "body": <the single-order API's error body>}``. Each item is parsed by the single-order
``InputSerializer``; the business rules are ``apps.orders.batch.orders_submit_batch``. The whole request is
also under ``Idempotency-Key`` (``idempotent_execute``): a replay returns the stored 207 byte for byte.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import (
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import exceptions as drf_exceptions
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.errors import exception_handler
from apps.core.idempotency import idempotent_execute, owner_of
from apps.core.schema import ErrorSerializer
from apps.orders.apis import OrderCreateApi, OrderOutputSerializer, _scope, account_of, order_request_of
from apps.orders.batch import MAX_BATCH, orders_submit_batch
from apps.orders.presenters import order_json
from apps.orders.types import OrderRequest


def _error_item(exc: Exception) -> dict[str, Any]:
    response = exception_handler(exc, {})
    assert response is not None
    return {"status": response.status_code, "body": response.data}


@extend_schema_serializer(component_name="OrderBatchItemResult")
class _BatchItemOutputSerializer(serializers.Serializer[Any]):
    status = serializers.IntegerField(help_text="201 new, 200 same terms as an earlier order, else 4xx")
    body = PolymorphicProxySerializer(
        component_name="OrderOrError",
        serializers=[OrderOutputSerializer, ErrorSerializer],
        resource_type_field_name=None,
    )


class OrdersBatchApi(APIView):
    permission_classes = [_scope("trade")]

    # Items stay free-form objects here: each is parsed by the single-order serializer and a bad one gets its own
    # 422 inside the 207, so the request as a whole accepts them.
    @extend_schema_serializer(component_name="OrderBatch")
    class InputSerializer(serializers.Serializer[Any]):
        orders = serializers.ListField(
            child=serializers.DictField(), min_length=1, max_length=MAX_BATCH, allow_empty=False
        )

    @extend_schema(
        operation_id="orders_create_batch",
        request=InputSerializer,
        responses={
            207: OpenApiResponse(
                _BatchItemOutputSerializer(many=True),
                description="one {status, body} per order, in request order",
            )
        },
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        raw: list[dict[str, Any]] = serializer.validated_data["orders"]
        # Parse every item first: a malformed item gets its own 422 and never reaches the service.
        parsed: list[OrderRequest | dict[str, Any]] = []
        for item in raw:
            item_serializer = OrderCreateApi.InputSerializer(data=item)
            try:
                item_serializer.is_valid(raise_exception=True)
            except drf_exceptions.ValidationError as exc:
                parsed.append(_error_item(exc))
                continue
            parsed.append(order_request_of(item_serializer.validated_data))
        account = account_of(request)

        def operation() -> Response:
            valid = [p for p in parsed if isinstance(p, OrderRequest)]
            outcomes = iter(orders_submit_batch(account=account, items=valid))
            body: list[dict[str, Any]] = []
            for p in parsed:
                if not isinstance(p, OrderRequest):
                    body.append(p)
                    continue
                outcome = next(outcomes)
                if outcome.error is not None:
                    body.append(_error_item(outcome.error))
                else:
                    assert outcome.order is not None
                    body.append({"status": outcome.status, "body": order_json(outcome.order, outcome.legs)})
            return Response(body, status=207)

        return idempotent_execute(request, operation, owner=owner_of(request))
