"""HTTP API of the kyc app: ``/v1/accounts/kyc`` (onboarding) and ``/v1/transfers`` (funding).

Thin views: parse with a nested ``InputSerializer``, call a service or selector, render with an
``OutputSerializer``. Mutations go through ``idempotent_execute`` (header ``Idempotency-Key``). Field names follow
Alpaca's Broker API (account opening, transfers). A customer only ever sees their own application and transfers;
another id answers 404. The tax id is never returned, only masked.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.audit import client_ip
from apps.accounts.permissions import HasScope
from apps.core.fields import StrictDecimalField
from apps.core.idempotency import idempotent_execute, owner_of
from apps.core.money import MONEY_DECIMAL_PLACES, QTY_DECIMAL_PLACES
from apps.kyc import ports, selectors
from apps.kyc.models import KycAgreement, KycApplication, KycDocument, Transfer
from apps.kyc.services import transfers as transfer_services
from apps.kyc.services.kyc import DocumentUpload, document_decode, kyc_application_submit

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
    description="Replays return the stored response; a different body with the same key is refused (422).",
)  # fmt: skip


class KycContactSerializer(serializers.Serializer[Any]):
    email_address = serializers.EmailField(required=False)
    phone_number = serializers.CharField(max_length=30, required=False)
    street_address = serializers.ListField(
        child=serializers.CharField(max_length=200), max_length=3, required=False
    )
    unit = serializers.CharField(max_length=50, required=False, allow_blank=True)
    city = serializers.CharField(max_length=100, required=False)
    state = serializers.CharField(max_length=50, required=False, allow_blank=True)
    postal_code = serializers.CharField(max_length=20, required=False)
    country = serializers.CharField(max_length=3, min_length=3, required=False)


class KycIdentitySerializer(serializers.Serializer[Any]):
    given_name = serializers.CharField(max_length=100, required=False)
    middle_name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    family_name = serializers.CharField(max_length=100, required=False)
    date_of_birth = serializers.DateField(required=False)
    tax_id = serializers.CharField(max_length=40, required=False)
    tax_id_type = serializers.CharField(max_length=20, required=False)
    country_of_citizenship = serializers.CharField(max_length=3, min_length=3, required=False)
    country_of_birth = serializers.CharField(max_length=3, min_length=3, required=False)
    country_of_tax_residence = serializers.CharField(max_length=3, min_length=3, required=False)
    funding_source = serializers.ListField(
        child=serializers.ChoiceField(
            ["employment_income", "investments", "inheritance", "business_income", "savings", "family"]
        ),
        max_length=6,
        required=False,
    )


class KycDisclosuresSerializer(serializers.Serializer[Any]):
    is_control_person = serializers.BooleanField(required=False)
    is_affiliated_exchange_or_finra = serializers.BooleanField(required=False)
    is_politically_exposed = serializers.BooleanField(required=False)
    immediate_family_exposed = serializers.BooleanField(required=False)


class KycAgreementSerializer(serializers.Serializer[Any]):
    agreement = serializers.ChoiceField(KycAgreement.Kind.values)
    signed_at = serializers.DateTimeField()
    ip_address = serializers.IPAddressField()
    revision = serializers.CharField(max_length=20, required=False, allow_blank=True)


class KycDocumentSerializer(serializers.Serializer[Any]):
    document_type = serializers.ChoiceField(KycDocument.DocumentType.values)
    document_sub_type = serializers.CharField(max_length=40, required=False, allow_blank=True)
    content = serializers.CharField(help_text="base64 of a PDF, JPEG or PNG")
    mime_type = serializers.CharField(max_length=40, required=False)


class KycTrustedContactSerializer(serializers.Serializer[Any]):
    given_name = serializers.CharField(max_length=100)
    family_name = serializers.CharField(max_length=100)
    email_address = serializers.EmailField(required=False)
    phone_number = serializers.CharField(max_length=30, required=False)


class KycApi(APIView):
    """GET/POST /v1/accounts/kyc: the caller's CIP application (partial saves allowed until complete)."""

    permission_classes = [HasScope("read")]

    @extend_schema_serializer(component_name="KycSubmit")
    class InputSerializer(serializers.Serializer[Any]):
        contact = KycContactSerializer(required=False)
        identity = KycIdentitySerializer(required=False)
        disclosures = KycDisclosuresSerializer(required=False)
        agreements = KycAgreementSerializer(many=True, required=False)
        documents = serializers.ListField(child=KycDocumentSerializer(), required=False, max_length=5)
        trusted_contact = KycTrustedContactSerializer(required=False)

    @extend_schema_serializer(component_name="KycApplication")
    class OutputSerializer(serializers.Serializer[Any]):
        id = serializers.UUIDField(allow_null=True)  # null until the first save (status NOT_STARTED)
        account_id = serializers.UUIDField()
        status = serializers.CharField()
        account_status = serializers.CharField(source="account.status")
        missing = serializers.ListField(child=serializers.CharField())
        review_reasons = serializers.ListField(child=serializers.CharField())
        info_requested = serializers.CharField()
        given_name = serializers.CharField()
        family_name = serializers.CharField()
        tax_id = serializers.CharField(source="tax_id_masked")
        submitted_at = serializers.DateTimeField(allow_null=True)
        documents = serializers.IntegerField(source="documents.count")

    def _render(self, application: KycApplication | None, request: Request) -> Response:
        if application is None:
            account = ports.account_of_user(request.user)
            return Response(
                {
                    "id": None, "account_id": str(account.pk), "status": "NOT_STARTED",
                    "account_status": account.status, "missing": ["contact", "identity", "disclosures", "agreements"],
                    "review_reasons": [], "info_requested": "", "given_name": "", "family_name": "", "tax_id": "",
                    "submitted_at": None, "documents": 0,
                }
            )  # fmt: skip
        return Response(self.OutputSerializer(application).data)

    @extend_schema(operation_id="kyc_get", responses={200: OutputSerializer}, tags=["onboarding"])
    def get(self, request: Request) -> Response:
        account = ports.account_of_user(request.user)
        return self._render(selectors.kyc_application_for_account(account), request)

    @extend_schema(
        operation_id="kyc_submit",
        request=InputSerializer,
        responses={200: OutputSerializer},
        parameters=[IDEMPOTENCY_HEADER],
        tags=["onboarding"],
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        account = ports.account_of_user(request.user)
        uploads = [
            DocumentUpload(
                document_type=d["document_type"], document_sub_type=d.get("document_sub_type", ""),
                content=document_decode(d["content"], i), mime_type=d.get("mime_type"),
            )
            for i, d in enumerate(v.get("documents", []))
        ]  # fmt: skip

        def operation() -> Response:
            application = kyc_application_submit(
                account=account,
                actor=request.user,
                sections={k: dict(v[k]) for k in ("contact", "identity", "disclosures") if k in v},
                agreements=[dict(a) for a in v.get("agreements", [])],
                documents=uploads,
                trusted_contact=dict(v["trusted_contact"]) if "trusted_contact" in v else None,
                request=request,
            )
            application.refresh_from_db()
            return self._render(application, request)

        return idempotent_execute(request, operation, owner=owner_of(request))


# As the orders API bounds notional and qty (apps.orders.apis); the cost basis within the ledger's money range.
MAX_TRANSFER_AMOUNT = Decimal("100000000000")
MAX_TRANSFER_QTY = Decimal("1000000000000")
MAX_TRANSFER_COST_BASIS = Decimal("100000000000000")


class TransferOutputSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    account_id = serializers.UUIDField()
    direction = serializers.CharField()
    type = serializers.CharField()
    status = serializers.CharField()
    amount = StrictDecimalField(decimal_places=MONEY_DECIMAL_PLACES, allow_null=True)
    symbol = serializers.CharField(allow_blank=True)
    qty = StrictDecimalField(decimal_places=QTY_DECIMAL_PLACES, allow_null=True)
    reason = serializers.CharField(allow_blank=True)
    requires_approval = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)


class TransfersApi(APIView):
    """GET /v1/transfers (the caller's transfers, newest first); POST /v1/transfers (a deposit/withdrawal)."""

    permission_classes = [HasScope("transfer")]

    @extend_schema_serializer(component_name="TransferCreate")
    class InputSerializer(serializers.Serializer[Any]):
        direction = serializers.ChoiceField(Transfer.Direction.values)
        type = serializers.ChoiceField(Transfer.Type.values)
        # Upper bounds: without them a 16-digit amount was accepted and a 16-digit qty overflowed the column (500).
        amount = StrictDecimalField(
            decimal_places=2, positive=True, max_value=MAX_TRANSFER_AMOUNT, required=False
        )
        symbol = serializers.RegexField(r"^[A-Z][A-Z0-9.]{0,9}$", required=False)
        qty = StrictDecimalField(
            decimal_places=QTY_DECIMAL_PLACES, positive=True, max_value=MAX_TRANSFER_QTY, required=False
        )
        cost_basis = StrictDecimalField(
            decimal_places=MONEY_DECIMAL_PLACES,
            min_value=Decimal(0),
            max_value=MAX_TRANSFER_COST_BASIS,
            required=False,
        )

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if attrs["type"] == Transfer.Type.ACATS:
                if "symbol" not in attrs or "qty" not in attrs or "amount" in attrs:
                    raise serializers.ValidationError(
                        {"qty": "acats transfers take symbol and qty, not amount"}
                    )
            elif "amount" not in attrs or "qty" in attrs or "symbol" in attrs:
                raise serializers.ValidationError({"amount": "ach and wire transfers take amount only"})
            return attrs

    @extend_schema(
        operation_id="transfers_list", responses={200: TransferOutputSerializer(many=True)}, tags=["funding"]
    )
    def get(self, request: Request) -> Response:
        account = ports.account_of_user(request.user)
        rows = selectors.transfers_for_account(account)[:500]
        return Response(TransferOutputSerializer(rows, many=True).data)

    @extend_schema(
        operation_id="transfers_create",
        request=InputSerializer,
        responses={200: TransferOutputSerializer},
        parameters=[IDEMPOTENCY_HEADER],
        tags=["funding"],
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        account = ports.account_of_user(request.user)
        ip = client_ip(request)

        def operation() -> Response:
            transfer = transfer_services.transfer_create(
                account=account, actor=request.user, direction=v["direction"], type=v["type"],
                amount=v.get("amount"), symbol=v.get("symbol", ""), qty=v.get("qty"),
                cost_basis=v.get("cost_basis"), device_key=f"ip:{ip}" if ip else "", request=request,
            )  # fmt: skip
            return Response(TransferOutputSerializer(transfer).data)

        return idempotent_execute(request, operation, owner=owner_of(request))


class TransferDetailApi(APIView):
    """GET /v1/transfers/{transfer_id}: one of the caller's transfers (404 for any other id)."""

    permission_classes = [HasScope("read")]

    @extend_schema(operation_id="transfers_get", responses={200: TransferOutputSerializer}, tags=["funding"])
    def get(self, request: Request, transfer_id: str) -> Response:
        account = ports.account_of_user(request.user)
        return Response(TransferOutputSerializer(selectors.transfer_for_account(account, transfer_id)).data)
