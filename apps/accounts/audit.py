"""The audit trail: append-only, hash-chained records of every state change that matters.

Invariants:
- Appends are serialized by ``SELECT ... FOR UPDATE`` on the single ``AuditChainHead`` row, so ``seq`` is gap-free
  and each row's ``prev_hash`` is the hash of the row before it. The lock is held until the caller's transaction
  commits, so an audit record commits (or rolls back) together with the change it describes.
- ``hash`` = sha256 of the canonical JSON (sorted keys, no spaces, UTF-8) of every stored field plus ``prev_hash``.
  Values are normalized to JSON scalars *before* storing and hashing, so what is read back hashes the same.
- PostgreSQL triggers refuse UPDATE/DELETE, and the runtime role lacks the UPDATE, DELETE and TRUNCATE privileges
  and ownership (``apps.accounts.dbroles``); ``audit_verify`` detects any edit made around them (and deletions:
  gaps in ``seq``, or a tail that no longer reaches the chain head).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

from django.db import models, transaction
from django.http import HttpRequest
from django.utils import timezone

from apps.accounts.models import AuditChainHead, AuditRecord
from apps.core.logging import request_id_var

GENESIS_HASH = "0" * 64
HASHED_FIELDS: tuple[str, ...] = (
    "seq",
    "occurred_at",
    "actor_id",
    "actor_label",
    "action",
    "target_type",
    "target_id",
    "before",
    "after",
    "ip",
    "user_agent",
    "request_id",
    "prev_hash",
)


def jsonable(value: Any) -> Any:
    """Normalize a value to plain JSON (str/int/bool/None/list/dict) so a JSONB round trip is exact."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float):
        # Floats do not round-trip exactly through every JSON layer; keep their repr.
        return repr(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, models.Model):
        return str(value.pk)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [jsonable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    return str(value)


def canonical_json(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json({name: fields[name] for name in HASHED_FIELDS})).hexdigest()


def _row_fields(record: AuditRecord) -> dict[str, Any]:
    return {
        "seq": record.seq,
        "occurred_at": record.occurred_at.astimezone(dt.UTC).isoformat(),
        "actor_id": record.actor_id,
        "actor_label": record.actor_label,
        "action": record.action,
        "target_type": record.target_type,
        "target_id": record.target_id,
        "before": record.before,
        "after": record.after,
        "ip": record.ip,
        "user_agent": record.user_agent,
        "request_id": record.request_id,
        "prev_hash": record.prev_hash,
    }


def client_ip(request: Any) -> str:
    """The peer address (``REMOTE_ADDR``); forwarded headers are not trusted here."""
    raw = (getattr(request, "META", None) or {}).get("REMOTE_ADDR", "")
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return ""


def _actor(actor: Any) -> tuple[str, str]:
    if actor is None:
        return "", "system"
    if isinstance(actor, str):
        return "", actor  # a named system process, e.g. "reconciliation"
    if not getattr(actor, "is_authenticated", False):
        return "", "anonymous"
    return str(actor.pk), str(getattr(actor, "email", "") or actor)


def _target(target: Any) -> tuple[str, str]:
    if target is None:
        return "", ""
    if isinstance(target, tuple):
        return str(target[0]), str(target[1])
    if isinstance(target, models.Model):
        return target._meta.label_lower, str(target.pk)
    return type(target).__name__, str(target)


def audit_record(
    *,
    actor: Any,
    action: str,
    target: models.Model | tuple[str, str] | None,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    request: HttpRequest | Any | None = None,
) -> AuditRecord:
    """Append one record (who, when, from where, what, before, after) inside the caller's transaction.

    ``actor`` is a user, a system process name (``str``) or ``None`` (system). ``target`` is a model instance
    or ``(type, id)``. ``request`` (Django or DRF) supplies IP, user agent and request id.
    """
    raw_request = getattr(request, "_request", request)
    actor_id, actor_label = _actor(actor)
    target_type, target_id = _target(target)
    request_id = getattr(raw_request, "request_id", None) or request_id_var.get() or ""
    meta = getattr(raw_request, "META", None) or {}
    now = timezone.now()
    with transaction.atomic():
        AuditChainHead.objects.bulk_create(
            [AuditChainHead(id=1, seq=0, last_hash=GENESIS_HASH)], ignore_conflicts=True
        )
        head = AuditChainHead.objects.select_for_update().get(pk=1)
        fields: dict[str, Any] = {
            "seq": head.seq + 1,
            "occurred_at": now.astimezone(dt.UTC).isoformat(),
            "actor_id": actor_id,
            "actor_label": actor_label[:254],
            "action": action[:100],
            "target_type": target_type[:100],
            "target_id": target_id[:64],
            "before": jsonable(before) if before is not None else None,
            "after": jsonable(after) if after is not None else None,
            "ip": client_ip(raw_request) if raw_request is not None else "",
            "user_agent": str(meta.get("HTTP_USER_AGENT", ""))[:500],
            "request_id": str(request_id)[:128],
            "prev_hash": head.last_hash,
        }
        digest = record_hash(fields)
        record = AuditRecord.objects.create(**{**fields, "occurred_at": now, "hash": digest})
        head.seq = record.seq
        head.last_hash = digest
        head.save(update_fields=["seq", "last_hash"])
    return record


@dataclass(frozen=True)
class AuditVerifyResult:
    ok: bool
    checked: int
    broken_seq: int | None = None
    reason: str = ""


def _records(batch: int) -> Iterator[AuditRecord]:
    last = 0
    while True:
        rows = list(AuditRecord.objects.filter(seq__gt=last).order_by("seq")[:batch])
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def audit_verify(*, batch: int = 1000) -> AuditVerifyResult:
    """Walk the chain from the start; report the first broken link (edited, missing or reordered row)."""
    expected_seq = 1
    prev_hash = GENESIS_HASH
    checked = 0
    for record in _records(batch):
        if record.seq != expected_seq:
            return AuditVerifyResult(False, checked, expected_seq, f"record #{expected_seq} is missing")
        if record.prev_hash != prev_hash:
            return AuditVerifyResult(
                False, checked, record.seq, "prev_hash does not match the previous record"
            )
        if record_hash(_row_fields(record)) != record.hash:
            return AuditVerifyResult(False, checked, record.seq, "content does not match its hash")
        prev_hash = record.hash
        expected_seq += 1
        checked += 1
    head = AuditChainHead.objects.filter(pk=1).first()
    if head is not None and (head.seq != checked or head.last_hash != prev_hash):
        return AuditVerifyResult(False, checked, checked + 1, "records after the last one were removed")
    return AuditVerifyResult(True, checked)


def model_snapshot(instance: models.Model, fields: list[str] | None = None) -> dict[str, Any]:
    """The concrete field values of ``instance`` as JSON (FKs as ids; secrets and password hashes omitted)."""
    data: dict[str, Any] = {}
    for field in instance._meta.concrete_fields:
        if fields is not None and field.name not in fields:
            continue
        if field.name in {"password", "secret_hash"}:
            continue
        data[field.name] = jsonable(getattr(instance, field.attname))
    return data
