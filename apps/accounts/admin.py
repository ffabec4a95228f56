"""Back-office admin for users, brokerage accounts, API keys and the audit trail.

Every change made through the admin is audited (``AuditedModelAdmin``). Account state changes go through the
services (admin actions), never through field edits; the audit trail is read-only.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.db import transaction
from django.db.models import Model, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from apps.accounts import services
from apps.accounts.audit import audit_record, model_snapshot
from apps.accounts.models import ApiKey, AuditRecord, BrokerageAccount, User


class AuditedModelAdmin(admin.ModelAdmin[Any]):
    """Audits every add, change and delete done through the admin (before/after snapshots, who, from where)."""

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm[Any], change: bool) -> None:
        with transaction.atomic():
            before = None
            if change and obj.pk is not None:
                current = type(obj)._default_manager.filter(pk=obj.pk).first()
                before = model_snapshot(current) if current is not None else None
            super().save_model(request, obj, form, change)
            audit_record(
                actor=request.user,
                action=f"admin.{obj._meta.model_name}.{'changed' if change else 'added'}",
                target=obj,
                before=before,
                after=model_snapshot(obj),
                request=request,
            )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        with transaction.atomic():
            before = model_snapshot(obj)
            target = (obj._meta.label_lower, str(obj.pk))
            super().delete_model(request, obj)
            audit_record(
                actor=request.user,
                action=f"admin.{obj._meta.model_name}.deleted",
                target=target,
                before=before,
                after=None,
                request=request,
            )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        with transaction.atomic():
            for obj in queryset.order_by("pk"):
                self.delete_model(request, obj)


@admin.register(User)
class BrokerageUserAdmin(AuditedModelAdmin, UserAdmin[User]):
    list_display = ("email", "is_staff", "is_active", "date_joined")
    search_fields = ("email",)
    ordering = ("email",)

    def save_related(self, request: HttpRequest, form: ModelForm[Any], formsets: Any, change: bool) -> None:
        # Role changes are group membership changes: audit them with before/after.
        obj: Model = form.instance
        before = sorted(form.instance.groups.values_list("name", flat=True)) if change else []
        with transaction.atomic():
            super().save_related(request, form, formsets, change)
            after = sorted(form.instance.groups.values_list("name", flat=True))
            if before != after:
                audit_record(
                    actor=request.user,
                    action="admin.user.roles_changed",
                    target=obj,
                    before={"groups": before},
                    after={"groups": after},
                    request=request,
                )


@admin.register(BrokerageAccount)
class BrokerageAccountAdmin(AuditedModelAdmin):
    list_display = (
        "account_number",
        "owner",
        "status",
        "trading_blocked",
        "transfers_blocked",
        "account_blocked",
    )
    list_filter = ("status", "trading_blocked", "transfers_blocked", "account_blocked")
    search_fields = ("account_number", "owner__email")
    readonly_fields = [f.name for f in BrokerageAccount._meta.fields]
    actions = ["freeze", "unfreeze", "halt_trading", "resume_trading"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Freeze (block the account)", permissions=["change"])
    def freeze(self, request: HttpRequest, queryset: QuerySet[BrokerageAccount]) -> None:
        for account in queryset.order_by("pk"):
            services.account_blocks_set(
                account=account,
                actor=request.user,
                reason="admin freeze",
                account_blocked=True,
                request=request,
            )
        messages.success(request, "Frozen.")

    @admin.action(description="Unfreeze", permissions=["change"])
    def unfreeze(self, request: HttpRequest, queryset: QuerySet[BrokerageAccount]) -> None:
        for account in queryset.order_by("pk"):
            services.account_blocks_set(
                account=account,
                actor=request.user,
                reason="admin unfreeze",
                account_blocked=False,
                request=request,
            )
        messages.success(request, "Unfrozen.")

    @admin.action(description="Halt trading (kill switch)", permissions=["change"])
    def halt_trading(self, request: HttpRequest, queryset: QuerySet[BrokerageAccount]) -> None:
        for account in queryset.order_by("pk"):
            services.account_trading_halt(
                account=account, reason=f"halted by {request.user}", actor=request.user, request=request
            )
        messages.success(request, "Trading halted.")

    @admin.action(description="Resume trading", permissions=["change"])
    def resume_trading(self, request: HttpRequest, queryset: QuerySet[BrokerageAccount]) -> None:
        for account in queryset.order_by("pk"):
            services.account_trading_resume(account=account, actor=request.user, request=request)
        messages.success(request, "Trading resumed.")


@admin.register(ApiKey)
class ApiKeyAdmin(AuditedModelAdmin):
    list_display = ("key_id", "owner", "name", "created_at", "expires_at", "revoked_at", "last_used_at")
    search_fields = ("key_id", "owner__email")
    exclude = ("secret_hash",)
    readonly_fields = (
        "key_id",
        "owner",
        "name",
        "scopes",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset.order_by("pk"):
            services.api_key_revoke(key=key, actor=request.user, request=request)


@admin.register(AuditRecord)
class AuditRecordAdmin(admin.ModelAdmin[AuditRecord]):
    list_display = ("seq", "occurred_at", "actor_label", "action", "target_type", "target_id", "ip")
    list_filter = ("action", "target_type")
    search_fields = ("actor_label", "target_id", "request_id")
    ordering = ("-seq",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
