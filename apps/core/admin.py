from django.contrib import admin

from apps.core.models import IdempotencyRecord, InboxRecord, StoredEvent


@admin.register(StoredEvent)
class StoredEventAdmin(admin.ModelAdmin[StoredEvent]):
    list_display = ("id", "event_type", "aggregate_type", "aggregate_id", "sequence", "topic", "published_at")
    list_filter = ("event_type", "topic")
    search_fields = ("aggregate_id", "event_id")

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(InboxRecord)
class InboxRecordAdmin(admin.ModelAdmin[InboxRecord]):
    list_display = ("consumer", "event_id", "topic", "partition", "offset", "applied_at")
    list_filter = ("consumer",)


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin[IdempotencyRecord]):
    list_display = ("owner", "key", "method", "path", "state", "response_status", "created_at")
