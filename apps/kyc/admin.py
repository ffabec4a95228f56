"""Compliance back office: KYC review queue, sanctions four-eyes overrides, AML case work, transfers, holds.

Every action calls a service (which audits it with the acting officer and the request) — the admin never writes
models directly, except adding a new AML threshold version (rows are never edited). Refusals from the services
(four eyes, wrong state) are shown as error messages. The admin site itself requires staff with 2FA (accounts app).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from apps.core.errors import BrokerageError
from apps.kyc import ports
from apps.kyc.documents import EXTENSIONS
from apps.kyc.models import (
    AmlAlert,
    AmlCase,
    AmlCaseNote,
    AmlThresholdSet,
    ComplianceHold,
    KycApplication,
    KycDocument,
    SanctionsScreening,
    Transfer,
)
from apps.kyc.selectors import DOCUMENT_VIEW_PERMISSION, kyc_document_content
from apps.kyc.services import aml, holds, kyc, transfers

REQUEST_INFO_MESSAGE = (
    "Please upload a government-issued photo ID and a proof of address dated within 90 days."
)


def _each(
    modeladmin: admin.ModelAdmin[Any],
    request: HttpRequest,
    queryset: QuerySet[Any],
    fn: Callable[[Any], Any],
    done: str,
) -> None:
    ok = 0
    for obj in queryset.order_by("pk"):
        try:
            fn(obj)
            ok += 1
        except BrokerageError as exc:
            modeladmin.message_user(request, f"{obj}: {exc.message}", messages.ERROR)
    if ok:
        modeladmin.message_user(request, f"{done}: {ok}", messages.SUCCESS)


class _ReadOnlyInline(admin.TabularInline):  # type: ignore[type-arg]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _document_url(document: KycDocument) -> str:
    return reverse("admin:kyc_kycapplication_document", args=[document.pk])


class KycDocumentInline(_ReadOnlyInline):
    model = KycDocument
    fields = (
        "document_type",
        "document_sub_type",
        "content_type",
        "size",
        "sha256",
        "download",
        "uploaded_at",
    )
    readonly_fields = fields

    @admin.display(description="File")
    def download(self, obj: KycDocument) -> str:
        # Stored encrypted: the file is served decrypted only by the permission-checked admin view, never by URL.
        return format_html('<a href="{}">download</a>', _document_url(obj))


class SanctionsScreeningInline(_ReadOnlyInline):
    model = SanctionsScreening
    fields = ("screened_at", "trigger", "list_version", "decision", "review", "new_match")
    readonly_fields = fields


@admin.register(KycApplication)
class KycApplicationAdmin(admin.ModelAdmin[KycApplication]):
    list_display = ("account", "given_name", "family_name", "status", "review_reasons", "submitted_at")
    list_filter = ("status",)
    search_fields = ("family_name", "given_name", "account__account_number")
    ordering = ("submitted_at",)
    exclude = ("tax_id", "tax_id_digest")
    inlines = [KycDocumentInline, SanctionsScreeningInline]
    actions = ["approve", "reject", "request_information", "freeze_account", "unfreeze_account"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        names = [f.name for f in KycApplication._meta.fields if f.name not in ("tax_id", "tax_id_digest")]
        return ["evidence", "tax_id_masked", *names]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.document_download)
        return [
            path("document/<uuid:document_id>/", view, name="kyc_kycapplication_document"),
            *super().get_urls(),
        ]

    def document_download(self, request: HttpRequest, document_id: Any) -> HttpResponse:
        """An identity document, decrypted, for compliance staff only; every access is audited."""
        if not request.user.has_perm(DOCUMENT_VIEW_PERMISSION):
            raise PermissionDenied
        document = get_object_or_404(KycDocument.objects.select_related("application"), pk=document_id)
        content = kyc_document_content(document=document)
        ports.audit(
            actor=request.user, action="kyc.document_viewed", target=document, before=None,
            after={"application_id": str(document.application_id), "document_type": document.document_type},
            request=request,
        )  # fmt: skip
        response = HttpResponse(content, content_type=document.content_type)
        filename = f"{document.pk}.{EXTENSIONS.get(document.content_type, 'bin')}"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        response["Cache-Control"] = "no-store, private"
        response["X-Content-Type-Options"] = "nosniff"
        return response

    @admin.display(description="Documents and screening evidence")
    def evidence(self, obj: KycApplication) -> str:
        documents = format_html_join(
            "", '<li><a href="{}">{}</a> ({}, {} bytes)</li>',
            ((_document_url(d), d.document_type, d.content_type, d.size) for d in obj.documents.all()),
        )  # fmt: skip
        rows = []
        for screening in obj.screenings.order_by("-screened_at")[:3]:
            candidates = format_html_join(
                "", "<li>{} — {} (ent {}, {}, score {} by {}, DOB {})</li>",
                ((c["matched_name"], c["primary_name"], c["ent_num"], ", ".join(c["programs"]), c["score"],
                  c.get("matched_by", "name"), c["dob_check"]) for c in screening.best_candidates),
            )  # fmt: skip
            rows.append(
                format_html(
                    "<p><b>{}</b> {} list {} → {} ({})</p><ul>{}</ul>",
                    screening.screened_at,
                    screening.trigger,
                    screening.list_version,
                    screening.decision,
                    screening.review,
                    candidates,
                )
            )
        return format_html(
            '<div style="display:flex;gap:2em"><div><h4>Documents</h4><ul>{}</ul></div>'
            "<div><h4>Sanctions screening</h4>{}</div><div><h4>Checks</h4><pre>{}</pre></div></div>",
            documents, format_html_join("", "{}", ((r,) for r in rows)),
            json.dumps(obj.check_results, indent=1),
        )  # fmt: skip

    @admin.action(description="Approve (open sanctions hits must be cleared first)")
    def approve(self, request: HttpRequest, queryset: QuerySet[KycApplication]) -> None:
        _each(
            self,
            request,
            queryset,
            lambda a: kyc.kyc_application_approve(application=a, actor=request.user, request=request),
            "Approved",
        )

    @admin.action(description="Reject")
    def reject(self, request: HttpRequest, queryset: QuerySet[KycApplication]) -> None:
        _each(
            self,
            request,
            queryset,
            lambda a: kyc.kyc_application_reject(
                application=a, actor=request.user, reason="rejected by compliance review", request=request
            ),
            "Rejected",
        )

    @admin.action(description="Request information from the customer")
    def request_information(self, request: HttpRequest, queryset: QuerySet[KycApplication]) -> None:
        _each(
            self,
            request,
            queryset,
            lambda a: kyc.kyc_application_request_info(
                application=a, actor=request.user, message=REQUEST_INFO_MESSAGE, request=request
            ),
            "Information requested",
        )

    @admin.action(description="Freeze the account (no trading, no transfers)")
    def freeze_account(self, request: HttpRequest, queryset: QuerySet[KycApplication]) -> None:
        _each(
            self,
            request,
            queryset,
            lambda a: holds.account_freeze(
                account=a.account, actor=request.user, reason="frozen by compliance", request=request
            ),
            "Frozen",
        )

    @admin.action(description="Unfreeze the account")
    def unfreeze_account(self, request: HttpRequest, queryset: QuerySet[KycApplication]) -> None:
        _each(
            self,
            request,
            queryset,
            lambda a: holds.account_unfreeze(account=a.account, actor=request.user, request=request),
            "Unfrozen",
        )


@admin.register(SanctionsScreening)
class SanctionsScreeningAdmin(admin.ModelAdmin[SanctionsScreening]):
    list_display = (
        "application",
        "list_version",
        "decision",
        "review",
        "new_match",
        "trigger",
        "screened_at",
    )
    list_filter = ("review", "decision", "trigger", "new_match")
    ordering = ("screened_at",)
    actions = ["override_request", "override_confirm", "match_confirm"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in SanctionsScreening._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Override: false positive (first officer)")
    def override_request(self, request: HttpRequest, queryset: QuerySet[SanctionsScreening]) -> None:
        _each(
            self,
            request,
            queryset,
            lambda s: kyc.sanctions_override_request(
                screening_row=s,
                actor=request.user,
                reason="false positive after review of date of birth and nationality",
                request=request,
            ),
            "Override requested",
        )

    @admin.action(description="Confirm override (second, different officer)")
    def override_confirm(self, request: HttpRequest, queryset: QuerySet[SanctionsScreening]) -> None:
        _each(
            self,
            request,
            queryset,
            lambda s: kyc.sanctions_override_confirm(screening_row=s, actor=request.user, request=request),
            "Override confirmed",
        )

    @admin.action(description="Confirm true match (reject and freeze)")
    def match_confirm(self, request: HttpRequest, queryset: QuerySet[SanctionsScreening]) -> None:
        _each(
            self,
            request,
            queryset,
            lambda s: kyc.sanctions_match_confirm(screening_row=s, actor=request.user, request=request),
            "Match confirmed",
        )


@admin.register(Transfer)
class TransferAdmin(admin.ModelAdmin[Transfer]):
    list_display = ("id", "account", "direction", "type", "amount", "symbol", "qty", "status", "created_at")
    list_filter = ("status", "direction", "type", "requires_approval")
    search_fields = ("id", "account__account_number")
    actions = ["approve", "reject"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in Transfer._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Approve withdrawal (four eyes: two different approvers)")
    def approve(self, request: HttpRequest, queryset: QuerySet[Transfer]) -> None:
        _each(
            self,
            request,
            queryset,
            lambda t: transfers.transfer_approve(transfer=t, approver=request.user, request=request),
            "Approved",
        )

    @admin.action(description="Reject transfer")
    def reject(self, request: HttpRequest, queryset: QuerySet[Transfer]) -> None:
        _each(
            self,
            request,
            queryset,
            lambda t: transfers.transfer_reject(
                transfer=t, actor=request.user, reason="rejected by operations", request=request
            ),
            "Rejected",
        )


class AmlAlertInline(_ReadOnlyInline):
    model = AmlAlert
    fields = ("rule", "raised_at", "thresholds", "details")
    readonly_fields = fields


class AmlCaseNoteInline(admin.TabularInline):  # type: ignore[type-arg]
    model = AmlCaseNote
    extra = 1
    can_delete = False
    fields = ("body", "author", "created_at")
    readonly_fields = ("author", "created_at")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AmlCase)
class AmlCaseAdmin(admin.ModelAdmin[AmlCase]):
    list_display = ("id", "account", "status", "assignee", "disposition", "opened_at")
    list_filter = ("status", "disposition")
    readonly_fields = ("account", "status", "assignee", "disposition", "opened_at", "closed_at")
    fields = ("account", "status", "assignee", "disposition", "sar_narrative", "opened_at", "closed_at")
    inlines = [AmlAlertInline, AmlCaseNoteInline]
    actions = [
        "assign_to_me",
        "close_no_action",
        "close_sar_filed",
        "hold_account",
        "export_sar_csv",
        "export_sar_json",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: AmlCase, form: Any, change: bool) -> None:
        # Only the narrative is editable here; it is saved as-is and audited through the close action.
        obj.save(update_fields=["sar_narrative"])

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        for inline_form in formset.forms:
            body = inline_form.cleaned_data.get("body") if inline_form.has_changed() else None
            if body and inline_form.instance.pk is None:
                aml.aml_case_note_add(case=form.instance, author=request.user, body=body, request=request)

    @admin.action(description="Assign to me")
    def assign_to_me(self, request: HttpRequest, queryset: QuerySet[AmlCase]) -> None:
        _each(
            self,
            request,
            queryset,
            lambda c: aml.aml_case_assign(case=c, assignee=request.user, actor=request.user, request=request),
            "Assigned",
        )

    @admin.action(description="Close: no action")
    def close_no_action(self, request: HttpRequest, queryset: QuerySet[AmlCase]) -> None:
        _each(
            self,
            request,
            queryset,
            lambda c: aml.aml_case_close(
                case=c, actor=request.user, disposition="no_action", request=request
            ),
            "Closed",
        )

    @admin.action(description="Close: SAR filed (needs a narrative)")
    def close_sar_filed(self, request: HttpRequest, queryset: QuerySet[AmlCase]) -> None:
        _each(
            self,
            request,
            queryset,
            lambda c: aml.aml_case_close(
                case=c,
                actor=request.user,
                disposition="sar_filed",
                sar_narrative=c.sar_narrative,
                request=request,
            ),
            "Closed",
        )

    @admin.action(description="Place an AML hold on the account (blocks withdrawals)")
    def hold_account(self, request: HttpRequest, queryset: QuerySet[AmlCase]) -> None:
        _each(
            self,
            request,
            queryset,
            lambda c: holds.hold_place(
                account=c.account,
                kind=ComplianceHold.Kind.AML,
                reason=f"AML case {c.pk}",
                actor=request.user,
                request=request,
            ),
            "Held",
        )

    @admin.action(description="Export SAR draft (CSV)")
    def export_sar_csv(self, request: HttpRequest, queryset: QuerySet[AmlCase]) -> HttpResponse:
        response = HttpResponse(
            aml.sar_draft_csv(list(queryset.order_by("opened_at"))), content_type="text/csv"
        )
        response["Content-Disposition"] = 'attachment; filename="sar-drafts.csv"'
        return response

    @admin.action(description="Export SAR draft (JSON)")
    def export_sar_json(self, request: HttpRequest, queryset: QuerySet[AmlCase]) -> HttpResponse:
        body = json.dumps([aml.sar_draft(c) for c in queryset.order_by("opened_at")], indent=2)
        response = HttpResponse(body, content_type="application/json")
        response["Content-Disposition"] = 'attachment; filename="sar-drafts.json"'
        return response


@admin.register(ComplianceHold)
class ComplianceHoldAdmin(admin.ModelAdmin[ComplianceHold]):
    list_display = ("account", "kind", "reason", "created_at", "released_at")
    list_filter = ("kind",)
    actions = ["release"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in ComplianceHold._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Release hold")
    def release(self, request: HttpRequest, queryset: QuerySet[ComplianceHold]) -> None:
        def one(h: ComplianceHold) -> None:
            if h.kind == ComplianceHold.Kind.FREEZE:
                holds.account_unfreeze(account=h.account, actor=request.user, request=request)
            else:
                holds.hold_release(account=h.account, kind=h.kind, actor=request.user, request=request)

        _each(self, request, queryset.filter(released_at__isnull=True), one, "Released")


@admin.register(AmlThresholdSet)
class AmlThresholdSetAdmin(admin.ModelAdmin[AmlThresholdSet]):
    """New versions are added (with a future effective date); existing versions are never edited."""

    list_display = ("version", "effective_from", "large_cash_amount", "structuring_floor", "dormant_days")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
