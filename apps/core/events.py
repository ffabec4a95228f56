"""The versioned, immutable event envelope every process speaks.

Invariants:
- ``event_id`` is unique forever; consumers deduplicate on it (the inbox).
- ``(aggregate_type, aggregate_id, sequence)`` is unique and gap-free per aggregate (allocated in the same
  transaction as the business change, see ``apps.core.outbox``).
- ``occurred_at`` is timezone-aware UTC.
- The payload is plain JSON: decimals travel as strings, never as JSON numbers, so no consumer can read them
  through a binary float.
- Serialization is msgspec JSON with a fixed schema (``envelope_json_schema()``); no pickle anywhere.
- Event types are past tense (``OrderAccepted``); a payload change bumps ``event_version`` and registers an
  upcaster so old events still read.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

ENVELOPE_SCHEMA_VERSION = 1


class EventEnvelope(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    schema: int = ENVELOPE_SCHEMA_VERSION
    event_id: uuid.UUID
    event_type: str
    event_version: int
    aggregate_type: str
    aggregate_id: str
    sequence: int
    occurred_at: datetime
    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None
    payload: dict[str, Any]

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None or self.occurred_at.utcoffset() != UTC.utcoffset(None):
            raise ValueError("occurred_at must be timezone-aware UTC")
        if self.sequence < 1:
            raise ValueError("sequence starts at 1")
        if self.event_version < 1:
            raise ValueError("event_version starts at 1")


_encoder = msgspec.json.Encoder(decimal_format="string")
_decoder = msgspec.json.Decoder(EventEnvelope)


def encode(envelope: EventEnvelope) -> bytes:
    return _encoder.encode(envelope)


def decode(raw: bytes) -> EventEnvelope:
    """Decode and upcast to the newest version of its event type."""
    envelope = _decoder.decode(raw)
    return upcast(envelope)


def envelope_json_schema() -> dict[str, Any]:
    schema: dict[str, Any] = msgspec.json.schema(EventEnvelope)
    return schema


def new_envelope(
    *,
    event_type: str,
    aggregate_type: str,
    aggregate_id: str,
    sequence: int,
    payload: dict[str, Any],
    event_version: int = 1,
    correlation_id: uuid.UUID | None = None,
    causation_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> EventEnvelope:
    return EventEnvelope(
        event_id=event_id or uuid.uuid4(),
        event_type=event_type,
        event_version=event_version,
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        sequence=sequence,
        occurred_at=occurred_at or datetime.now(UTC),
        correlation_id=correlation_id,
        causation_id=causation_id,
        payload=payload,
    )


# --- Upcasters: (event_type, from_version) -> function(payload) -> payload at from_version + 1 ------------
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def register_upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    def decorator(func: Upcaster) -> Upcaster:
        key = (event_type, from_version)
        if key in _UPCASTERS:
            raise ValueError(f"upcaster for {key} already registered")
        _UPCASTERS[key] = func
        return func

    return decorator


def upcast(envelope: EventEnvelope) -> EventEnvelope:
    payload = envelope.payload
    version = envelope.event_version
    while (envelope.event_type, version) in _UPCASTERS:
        payload = _UPCASTERS[(envelope.event_type, version)](payload)
        version += 1
    if version == envelope.event_version:
        return envelope
    return msgspec.structs.replace(envelope, payload=payload, event_version=version)
