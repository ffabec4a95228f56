"""Back-office views of the ledger. Ledger rows are read-only here (history is immutable; corrections are
reversing entries through services). Fee schedules are configuration operations may add (new versions only).
Reconciliation reports can be re-run on demand from the admin action."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.core.errors import BrokerageError
from apps.settlement.models import (
    CashAccountRestriction,
    CashHold,
    CorporateAction,
    CostBasisSetting,
    FeeRule,
    GoodFaithRule,
    GoodFaithViolation,
    JournalEntry,
    LedgerAccount,
    LotSelection,
    Posting,
    ReconciliationAlert,
    ReconciliationReport,
    SettlementObligation,
    ShareReservation,
    TaxLot,
)


class ReadOnlyAdmin(admin.ModelAdmin[Any]):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PostingInline(admin.TabularInline[Posting, JournalEntry]):
    model = Posting
    extra = 0
    can_delete = False
    readonly_fields = ("ledger_account", "asset", "amount")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(JournalEntry)
class JournalEntryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "entry_type",
        "source_type",
        "source_id",
        "account",
        "effective_date",
        "occurred_at",
    )
    list_filter = ("entry_type", "effective_date")
    search_fields = ("source_id", "account__account_number")
    inlines = [PostingInline]


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdmin):
    list_display = ("id", "account", "kind", "asset", "balance", "updated_at")
    list_filter = ("kind",)
    search_fields = ("account__account_number", "asset")


@admin.register(CashHold)
class CashHoldAdmin(ReadOnlyAdmin):
    list_display = ("order_id", "account", "amount", "remaining", "unsettled_remaining")
    search_fields = ("order_id",)


@admin.register(ShareReservation)
class ShareReservationAdmin(ReadOnlyAdmin):
    list_display = ("order_id", "account", "symbol", "qty", "remaining")
    search_fields = ("order_id", "symbol")


@admin.register(SettlementObligation)
class SettlementObligationAdmin(ReadOnlyAdmin):
    list_display = ("id", "account", "kind", "asset", "amount", "trade_date", "settle_date", "settled_at")
    list_filter = ("settle_date", "kind")


@admin.register(TaxLot)
class TaxLotAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "account",
        "symbol",
        "acquired_date",
        "qty",
        "remaining",
        "cost_basis",
        "remaining_cost",
    )
    search_fields = ("symbol", "account__account_number")


@admin.register(CostBasisSetting)
class CostBasisSettingAdmin(ReadOnlyAdmin):
    """Read-only: the customer changes the method through the API (``services.cost_basis_method_set``), which
    audits and records the event."""

    list_display = ("account", "method", "updated_at")
    list_filter = ("method",)
    search_fields = ("account__account_number",)


@admin.register(LotSelection)
class LotSelectionAdmin(ReadOnlyAdmin):
    list_display = ("id", "reservation", "lot", "seq", "qty", "remaining", "created_at")
    search_fields = ("reservation__order_id", "reservation__account__account_number")


@admin.register(FeeRule)
class FeeRuleAdmin(admin.ModelAdmin[FeeRule]):
    list_display = ("code", "effective_from", "active", "side", "rate", "per_share", "min_fee", "max_fee")
    list_filter = ("code",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None  # versions are added, never edited (past fills were charged by them)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ReconciliationReport)
class ReconciliationReportAdmin(ReadOnlyAdmin):
    list_display = ("id", "job", "run_at", "status", "resolved")
    list_filter = ("job", "status", "resolved")
    actions = ["rerun"]

    @admin.action(description="Re-run the selected jobs now")
    def rerun(self, request: HttpRequest, queryset: QuerySet[ReconciliationReport]) -> None:
        from apps.settlement.reconciliation import reconciliation_run

        for job in sorted(set(queryset.values_list("job", flat=True))):
            report = reconciliation_run(job=job)
            self.message_user(request, f"{job}: {report.status}", messages.INFO)


@admin.register(CorporateAction)
class CorporateActionAdmin(admin.ModelAdmin[CorporateAction]):
    """Operations enter splits and dividends here and apply them with the action (once; idempotent)."""

    list_display = (
        "id",
        "kind",
        "symbol",
        "effective_date",
        "ratio_num",
        "ratio_den",
        "cash_per_share",
        "record_date",
        "pay_date",
        "applied_at",
    )
    list_filter = ("kind", "applied_at")
    search_fields = ("symbol",)
    readonly_fields = ("applied_at", "created_at")
    actions = ["apply"]

    def has_change_permission(self, request: HttpRequest, obj: CorporateAction | None = None) -> bool:
        return obj is None or obj.applied_at is None  # applied terms are history

    def has_delete_permission(self, request: HttpRequest, obj: CorporateAction | None = None) -> bool:
        return obj is None or obj.applied_at is None

    @admin.action(description="Apply the selected corporate actions now")
    def apply(self, request: HttpRequest, queryset: QuerySet[CorporateAction]) -> None:
        from apps.settlement.corporate_actions import corporate_action_apply

        for action_id in queryset.order_by("pk").values_list("pk", flat=True):
            try:
                entries = corporate_action_apply(action_id=action_id)
            except BrokerageError as exc:
                self.message_user(request, f"#{action_id}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"#{action_id}: {len(entries)} holder entries", messages.INFO)


@admin.register(GoodFaithViolation)
class GoodFaithViolationAdmin(ReadOnlyAdmin):
    list_display = ("id", "account", "symbol", "trade_date", "funds_settle_date", "unsettled_funded")
    list_filter = ("trade_date",)
    search_fields = ("account__account_number", "symbol")


@admin.register(CashAccountRestriction)
class CashAccountRestrictionAdmin(ReadOnlyAdmin):
    list_display = ("id", "account", "start_date", "end_date", "reason")
    list_filter = ("end_date",)
    search_fields = ("account__account_number",)


@admin.register(GoodFaithRule)
class GoodFaithRuleAdmin(admin.ModelAdmin[GoodFaithRule]):
    list_display = ("effective_from", "max_violations", "window_months", "restriction_days")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None  # new versions only: past restrictions were imposed under the old ones

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ReconciliationAlert)
class ReconciliationAlertAdmin(ReadOnlyAdmin):
    list_display = ("id", "job", "kind", "account", "raised_at", "acknowledged")
    list_filter = ("acknowledged", "job", "kind")
    actions = ["acknowledge"]

    @admin.action(description="Acknowledge (the break is resolved)")
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[ReconciliationAlert]) -> None:
        count = queryset.filter(acknowledged=False).update(acknowledged=True)
        self.message_user(request, f"{count} alerts acknowledged", messages.INFO)
