"""OpenAPI building blocks shared by every app's ``apis.py`` (drf-spectacular).

Invariants:
- Decimals are documented as they travel: responses carry a decimal *string* (``StrictDecimalField`` output, never a
  float); requests accept a JSON number or a plain decimal string (``StrictJSONParser`` keeps numbers exact).
- The error body is documented once, as the ``Error`` component (``ErrorSerializer``, the same shape as
  ``apps.core.openapi.ERROR_SCHEMA``, which the post-processing hook attaches to every operation's 4xx). Views
  reference it through ``error_responses`` only for statuses the hook does not add (e.g. 503) or to say *why*.
- Importing this module registers the ``StrictDecimalField`` extension; every ``apis.py`` that annotates a view
  imports from here, so the extension is loaded whenever the schema is generated.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, extend_schema_serializer
from rest_framework import serializers

from apps.core.fields import StrictDecimalField

# What ``format_decimal`` emits (no exponent, no grouping) and what ``parse_exact_decimal`` accepts as text.
DECIMAL_PATTERN = r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?$"


class StrictDecimalFieldExtension(OpenApiSerializerFieldExtension):  # type: ignore[no-untyped-call]
    target_class = "apps.core.fields.StrictDecimalField"

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        text = {"type": "string", "format": "decimal", "pattern": DECIMAL_PATTERN}
        if direction == "request":
            return {"oneOf": [text, {"type": "number"}]}
        return text


def decimal_string(**kwargs: Any) -> StrictDecimalField:
    """A documentation-only decimal string field (responses built by presenters, not by serializers)."""
    return StrictDecimalField(decimal_places=9, **kwargs)


@extend_schema_serializer(component_name="Error")
class ErrorSerializer(serializers.Serializer[Any]):
    """The one error body (``apps.core.errors``): Alpaca's ``code``/``message`` plus our machine-readable keys."""

    code = serializers.IntegerField()
    message = serializers.CharField()
    error = serializers.CharField(required=False)
    field = serializers.CharField(required=False)
    rule = serializers.CharField(required=False)
    details = serializers.DictField(required=False)


def error_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ErrorSerializer, description=description)


def error_responses(**statuses: str) -> dict[int, OpenApiResponse]:
    """``{status: Error}`` for ``extend_schema(responses=...)``; keys are ``e404="why"`` style keyword names."""
    return {int(name.removeprefix("e")): error_response(why) for name, why in statuses.items()}


NO_CONTENT = OpenApiResponse(description="done; no body")


def operation_ids_by_route(route_ids: dict[str, str]) -> AutoSchema:
    """The ``schema`` of one APIView mounted on several routes: an operation id per route (else they collide).

    ``route_ids`` maps the OpenAPI path (``/v2/x/{param}``) to its id. Decorate the view *class* with
    ``extend_schema`` (without ``operation_id``) so the decoration builds on this schema.
    """

    class _ByRoute(AutoSchema):
        def get_operation_id(self) -> str:
            return route_ids.get(self.path) or str(super().get_operation_id())

    return _ByRoute()


class KeyedBySerializer(serializers.Serializer[Any]):
    """Documentation only: a JSON object with free keys (e.g. symbols) whose values are all ``child``."""

    def __init__(self, *, child: serializers.Serializer[Any], component_name: str, **kwargs: Any) -> None:
        self.child = child
        self.component_name = component_name
        super().__init__(**kwargs)


class KeyedByExtension(OpenApiSerializerExtension):  # type: ignore[no-untyped-call]
    target_class = "apps.core.schema.KeyedBySerializer"

    def get_name(self, auto_schema: Any, direction: Any) -> str | None:
        return str(self.target.component_name)

    def get_identity(self, auto_schema: Any, direction: Any) -> Any:
        return self.target.component_name

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        child = auto_schema.resolve_serializer(self.target.child, direction)
        return {"type": "object", "additionalProperties": child.ref}
