"""The matching-engine process: ``orders.commands`` -> the engine -> ``orders.events``, exactly once.

The engine is ``engine_native.Engine`` or ``engine.Engine`` (``apps.orders.engine_impl``; same events and snapshots).

Invariants:
- Single writer per partition: each command partition is owned by one process, which holds a transactional
  producer with ``transactional.id = f"{KAFKA_TOPIC_PREFIX}{group}-p{partition}"`` (``engine-p3`` in
  production). ``init_transactions`` fences any older owner of the same partition (a zombie's open
  transaction is aborted, its later commits fail).
- Consume-transform-produce is one Kafka transaction per (partition, batch): the outputs, the optional
  snapshot and the consumer offset commit together or not at all. Readers use ``read_committed``.
- The engine ``seq`` of a command is its Kafka offset, so every id the engine derives (trade and fill ids) and
  every output ``event_id`` (uuid5 of symbol, book_seq and index) depends only on the input position: replaying
  a command re-creates byte-identical envelopes.
- Every one of those ids is also qualified by the command topic's incarnation (its Kafka topic id, see
  ``Origin``): offsets and book sequences start again at 0 when the topics are created again over a database
  that holds the previous incarnation's fills, and an id that repeated would be skipped as already projected.
- Recovery: restore the partition's latest snapshot (``engine.snapshots``, key ``p{partition}``, written to
  snapshot partition = command partition), seek to ``snapshot.seq + 1`` and replay. Commands below the
  committed offset are applied to rebuild state but their output is suppressed (it was committed already), and
  no offset below the committed one is ever committed again.
- Undecodable commands go to the dead-letter topic inside the same transaction and are skipped (never applied).
- Nothing here reads a clock: ``occurred_at``/``filled_at`` of an output is the command's ``occurred_at``.
- Liveness (``stall_timeout``): a process that makes no input progress for that long while input is waiting (or
  the broker cannot say), or whose main loop is blocked in a call, or whose window commit has been in flight
  past its broker calls' bounds (``COMMIT_STALL_S``), logs ``engine stalled`` and exits with
  ``STALL_EXIT_CODE`` so its supervisor restarts it; recovery above makes the restart exactly-once. (A broker
  killed with -9 and restarted could leave the process alive but never progressing, orders left pending: once
  with its input unreadable, once with every commit blocked while input was still applied.)
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import msgspec
from confluent_kafka import (
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from apps.core import events, kafka
from apps.orders.engine_impl import AnyEngine, EngineClass, engine_class
from engine.commands import (
    AnyCommand,
    CancelOrder,
    Command,
    NewOrder,
    ReplaceOrder,
    SplitApply,
)
from engine.events import BookLevelChanged, Event, OrderFilled, TradeExecuted

logger = logging.getLogger(__name__)

# Fixed forever: output event ids are uuid5(ENGINE_NAMESPACE, ...), so a replay reproduces them.
ENGINE_NAMESPACE = uuid.UUID("5d0f6a52-3c1e-5b8e-9f0e-6e6769ce0001")

COMMAND_EVENT_TYPES = frozenset(
    {
        "orders.OrderSubmitted",
        "orders.CancelRequested",
        "orders.ReplaceRequested",
        "orders.SessionCommand",
        "orders.SplitRequested",
    }
)


def command_event_type(command: Command) -> str:
    """The envelope ``event_type`` that carries an engine command on ``orders.commands``."""
    if isinstance(command, NewOrder):
        return "orders.OrderSubmitted"
    if isinstance(command, CancelOrder):
        return "orders.CancelRequested"
    if isinstance(command, ReplaceOrder):
        return "orders.ReplaceRequested"
    if isinstance(command, SplitApply):
        return "orders.SplitRequested"
    return "orders.SessionCommand"


def command_envelope(
    command: Command,
    *,
    aggregate_id: str,
    sequence: int,
    occurred_at: datetime,
    correlation_id: uuid.UUID | None = None,
) -> events.EventEnvelope:
    """A command envelope as the order service writes it (used by the session clock, tests and the bench)."""
    return events.new_envelope(
        event_type=command_event_type(command),
        aggregate_type="order",
        aggregate_id=aggregate_id,
        sequence=sequence,
        payload={"command": msgspec.to_builtins(command)},
        occurred_at=occurred_at,
        correlation_id=correlation_id,
    )


# Engine fields holding "no price" as 0 become null in their decimal twin (an order never has price 0).
_ZERO_IS_ABSENT = frozenset({"limit_price_e4", "stop_price_e4", "notional_e4", "trail_price_e4", "water_e4"})


@dataclass(frozen=True, slots=True)
class EngineTopics:
    """Logical topic names (the environment prefix is added by ``apps.core.kafka.topic_name``)."""

    commands: str = "orders.commands"
    events: str = "orders.events"
    trades: str = "marketdata.trades"
    book: str = "marketdata.book"
    snapshots: str = "engine.snapshots"
    dead_letters: str = "orders.commands.dlq"


class UndecodableCommand(ValueError):
    """A message on the command topic that is not a valid command envelope."""


class SnapshotRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Value of an ``engine.snapshots`` record: the engine after applying input offset ``seq``.

    ``incarnation`` is the command topic's id when it was written: ``seq`` is an offset of that topic only.
    """

    partition: int
    seq: int
    state_hash: str
    engine: bytes
    incarnation: str = ""  # absent from snapshots written before it was recorded


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a partition's commands come from: the command topic's incarnation and the partition.

    ``incarnation`` is the command topic's Kafka topic id (``kafka.topic_id``), new each time the topic is
    created. The engine's trade and fill ids (``"{offset}:{n}[:b|s]"``) are unique within one partition of one
    incarnation only, so they are qualified as ``"{incarnation}:p{partition}:{offset}:{n}[:b|s]"``, and every
    output ``event_id`` names the incarnation too.
    """

    incarnation: str
    partition: int
    # ``"{incarnation}:p{partition}"``: the prefix of qualified ids and the book-less rejects' aggregate; and the
    # same with its ``:`` as bytes for the fast path. Worked out once per partition, not once per command.
    tag: str = field(init=False)
    id_prefix: bytes = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tag", f"{self.incarnation}:p{self.partition}")
        object.__setattr__(self, "id_prefix", f"{self.tag}:".encode())


# Exit status of a stalled process (EX_SOFTWARE): distinct from a crash's traceback exit 1.
STALL_EXIT_CODE = 70
# Bound (s) of each transactional broker call of a window's commit (``send_offsets_to_transaction``, then
# ``commit_transaction``): a commit still in flight after both bounds and a margin did not honour them (seen:
# every commit worker blocked in ``send_offsets_to_transaction`` for minutes after the broker was killed and
# restarted, while the main loop went on applying input into held records), so the process is stalled.
TXN_TIMEOUT_S = 30.0
# The largest snapshot record (bytes, before compression): the ``max.message.bytes`` of ``engine.snapshots``
# (config/kafka/topics.toml). A snapshot takes about 165 bytes per live order, so Kafka's 1 MB default stopped
# at about 6,000 resting orders per partition, and the refused produce crashed the engine at every restart. A
# larger snapshot is not written (an error is logged): recovery then replays from the previous one, slower but
# without stopping the partition.
SNAPSHOT_MAX_BYTES = 64 * 1024 * 1024
# Retry backoff (ms) of the transactional producers' broker requests: librdkafka starts at the first and doubles
# it per retry up to the second. A window's transaction begins as soon as the previous one is committed, while the
# coordinator is still writing that one's markers, so its first AddPartitionsToTxn / AddOffsetsToTxn is answered
# CONCURRENT_TRANSACTIONS and retried. At librdkafka's defaults (100 ms, doubling to 1 s) that retry put a 100 ms
# floor under every window's commit, so under every engine event's latency (command -> event p50 197 ms at 2,000
# commands/s); the coordinator completes in a few ms, longer under load, and the 20 ms cap keeps a slow completion
# from costing a doubled wait (p99 at 2,000/s 115-184 ms capped, 284-341 ms with a 1 s cap). docs/engine.md.
TXN_RETRY_BACKOFF_MS = 2
TXN_RETRY_BACKOFF_MAX_MS = 20
COMMIT_STALL_S = 2 * TXN_TIMEOUT_S + 5


# Offsets of a partition within which a command's event id repeating an earlier one marks a republished copy.
DUPLICATE_WINDOW = 100_000


class _EventIdOnly(msgspec.Struct):
    event_id: uuid.UUID


_event_id_only = msgspec.json.Decoder(_EventIdOnly)


def command_event_id(raw: bytes | None) -> int | None:
    """A command record's event id (as int), read alone; None when the record has none that is readable.

    Equal to the decoded envelope's whenever the whole command decodes: the runner reads it this way only for a
    record it cannot decode; recovery and the twin, which need nothing else of a record, always.
    """
    try:
        return _event_id_only.decode(raw or b"").event_id.int
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


class CommandWindow:
    """The event ids of a partition's recent commands: a command that repeats one is a republished copy.

    The outbox relay publishes at least once (a relay that dies after producing and before stamping its rows
    publishes them again), so a command can reach its partition twice under its one event id. The engine drops a
    finished order, so the copy of a filled order's ``NewOrder`` was executed a second time (a chaos run: a
    market sell of 2 filled twice, the counterparties' fills booked). A command whose event id is that of a
    command in the previous ``size`` offsets of its partition is such a copy and is not applied. The rule reads
    the partition's content only (every record with a readable event id, copies and undecodable commands
    included), so the runner rebuilds the window at recovery by reading the ``size`` offsets before its start,
    and the twin computes the same. A copy arriving more than ``size`` offsets later is not recognised.
    """

    __slots__ = ("_fifo", "_last", "size")

    def __init__(self, size: int = DUPLICATE_WINDOW) -> None:
        self.size = size
        self._last: dict[int, int] = {}  # event id (as int) -> latest offset
        self._fifo: deque[tuple[int, int]] = deque()

    def repeats(self, offset: int, event_id: int | None) -> bool:
        """Record the command at ``offset`` (offsets in increasing order; ``event_id`` as ``command_event_id``
        reads it); True when it repeats a recent one."""
        if event_id is None:
            return False
        low = offset - self.size
        fifo, last = self._fifo, self._last
        while fifo and fifo[0][0] < low:
            old_offset, old_id = fifo.popleft()
            if last.get(old_id) == old_offset:
                del last[old_id]
        previous = last.get(event_id)
        last[event_id] = offset
        fifo.append((offset, event_id))
        return previous is not None


def _txn_retrying(call: Callable[[], None], partition: int) -> None:
    """``call`` (a transactional producer call), again after a pause for as long as it fails retriably only."""
    pause = 0.05
    while True:
        try:
            call()
            return
        except KafkaException as exc:
            error = kafka.kafka_error(exc)
            if error is None or not error.retriable() or error.txn_requires_abort() or error.fatal():
                raise
            logger.warning(
                "engine transaction call failed, retrying",
                extra={"partition": partition, "error": str(error)},
            )
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def stall_reason(
    *, now: float, progress_at: float, commits_started: Iterable[float], stall_timeout: float
) -> str | None:
    """Why the process counts as stalled (the watchdog exits for a restart), or None.

    No input progress for ``stall_timeout`` s while input waits, or a window's commit in flight for longer than
    ``COMMIT_STALL_S`` (its broker calls' own bounds passed): input still moving does not hide a stuck commit.
    """
    if now - progress_at > stall_timeout:
        return f"no input progress for {now - progress_at:.1f} s"
    oldest = min(commits_started, default=now)
    if now - oldest > COMMIT_STALL_S:
        return f"a commit in flight for {now - oldest:.1f} s"
    return None


_snapshot_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(SnapshotRecord)


# ----------------------------------------------------------------------------------- pure transformation


def command_decode(raw: bytes | None) -> tuple[events.EventEnvelope, AnyCommand]:
    """Decode a command envelope and its engine command. Raises ``UndecodableCommand``."""
    if raw is None:
        raise UndecodableCommand("empty message")
    try:
        envelope = events.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise UndecodableCommand(f"bad envelope: {exc}") from exc
    if envelope.event_type not in COMMAND_EVENT_TYPES:
        raise UndecodableCommand(f"not a command event type: {envelope.event_type}")
    try:
        command: AnyCommand = msgspec.convert(envelope.payload["command"], AnyCommand)
    except (KeyError, msgspec.ValidationError) as exc:
        raise UndecodableCommand(f"bad command: {exc}") from exc
    return envelope, command


def scaled_text(value: int, places: int) -> str:
    """Exact decimal text of ``value * 10**-places`` without trailing zeros (integer arithmetic only)."""
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 10**places)
    frac_text = str(frac).rjust(places, "0").rstrip("0")
    return f"{sign}{whole}.{frac_text}" if frac_text else f"{sign}{whole}"


def event_payload(event: Event, *, origin: Origin, command: events.EventEnvelope) -> dict[str, Any]:
    """The engine event as builtins, each ``*_e4``/``*_e9`` int also as an exact decimal string.

    The engine's ``fill_id``/``trade_id`` are qualified with the origin here (``Origin``).
    """
    data: dict[str, Any] = msgspec.to_builtins(event)
    for key in ("fill_id", "trade_id"):
        if key in data:
            data[key] = f"{origin.tag}:{data[key]}"
    for key, value in list(data.items()):
        if key.endswith("_e4") or key.endswith("_e9"):
            places = 4 if key.endswith("_e4") else 9
            absent = value == 0 and key in _ZERO_IS_ABSENT
            data[key[:-3]] = None if absent else scaled_text(value, places)
    if isinstance(event, OrderFilled | TradeExecuted):
        data["filled_at"] = msgspec.to_builtins(command.occurred_at)
    return data


def event_envelope(
    event: Event, index: int, *, origin: Origin, command: events.EventEnvelope
) -> events.EventEnvelope:
    """The output envelope of the ``index``-th event a command produced (deterministic, see module doc)."""
    if event.book_seq > 0:
        aggregate_type, aggregate_id, sequence = "book", event.symbol, event.book_seq
        event_id = uuid.uuid5(
            ENGINE_NAMESPACE, f"{origin.incarnation}:{event.symbol}:{event.book_seq}:{index}"
        )
    else:
        # A reject that belongs to no book (unknown order id): numbered by input position instead.
        aggregate_type, aggregate_id, sequence = "engine_partition", origin.tag, event.seq + 1
        event_id = uuid.uuid5(ENGINE_NAMESPACE, f"{origin.tag}:{event.seq}:{index}")
    return events.EventEnvelope(
        event_id=event_id,
        event_type=f"engine.{type(event).__name__}",
        event_version=1,
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        sequence=sequence,
        occurred_at=command.occurred_at,
        correlation_id=command.correlation_id,
        causation_id=command.event_id,
        payload=event_payload(event, origin=origin, command=command),
    )


@dataclass(frozen=True, slots=True)
class Output:
    """One record to produce: logical topic, key and encoded envelope."""

    topic: str
    key: str
    value: bytes


def command_outputs(
    produced: list[Event],
    *,
    origin: Origin,
    command: events.EventEnvelope | CommandEnvelope,
    key: str,
    topics: EngineTopics,
) -> list[Output]:
    """Every record one applied command produces: orders.events, plus trades and L2 for market data."""
    out: list[Output] = []
    for record_key, value, market in command_records(produced, origin=origin, command=command, key=key):
        out.append(Output(topics.events, record_key, value))
        if market == MARKET_TRADES:
            out.append(Output(topics.trades, record_key, value))
        elif market == MARKET_BOOK:
            out.append(Output(topics.book, record_key, value))
    return out


# ----------------------------------------------------------------------------------- the hot path
# ``command_decode``/``event_envelope`` above are the specification; the runner uses the two functions below,
# which produce byte-identical results in a fraction of the time (tests/orders/test_engine_runner_fast.py
# compares them on every command and event type): one typed msgspec pass for a command, and for an event no
# ``uuid.UUID`` object, no envelope validation (its inputs come from a validated command), a per-event-type
# plan instead of a scan of every key, and memoised decimal texts (prices and sizes repeat).


class _CommandPayload(msgspec.Struct, frozen=True):
    command: AnyCommand  # other payload keys (a session command's date and partition) are ignored


class CommandEnvelope(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A command envelope decoded in one typed pass: ``events.EventEnvelope`` with the command as payload."""

    schema: int = events.ENVELOPE_SCHEMA_VERSION
    event_id: uuid.UUID
    event_type: str
    event_version: int
    aggregate_type: str
    aggregate_id: str
    sequence: int
    occurred_at: datetime
    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None
    payload: _CommandPayload

    def __post_init__(self) -> None:  # the checks of events.EventEnvelope
        if self.occurred_at.tzinfo is None or self.occurred_at.utcoffset() != UTC.utcoffset(None):
            raise ValueError("occurred_at must be timezone-aware UTC")
        if self.sequence < 1:
            raise ValueError("sequence starts at 1")
        if self.event_version < 1:
            raise ValueError("event_version starts at 1")


_command_envelope_decoder = msgspec.json.Decoder(CommandEnvelope)
_upcast_free: dict[tuple[str, int], bool] = {}


def _no_upcaster(event_type: str, version: int) -> bool:
    """True when ``events.upcast`` leaves this (type, version) unchanged (probed once per pair)."""
    pair = (event_type, version)
    free = _upcast_free.get(pair)
    if free is None:
        probe = events.new_envelope(
            event_type=event_type,
            event_version=version,
            aggregate_type="probe",
            aggregate_id="probe",
            sequence=1,
            payload={},
            occurred_at=datetime(2000, 1, 1, tzinfo=UTC),
            event_id=uuid.UUID(int=0),
        )
        try:
            free = events.upcast(probe) is probe
        except (KeyError, TypeError, ValueError):
            free = False  # an upcaster exists (and wants a real payload)
        _upcast_free[pair] = free
    return free


def command_decode_fast(raw: bytes | None) -> tuple[events.EventEnvelope | CommandEnvelope, AnyCommand]:
    """``command_decode`` in one typed pass; anything unusual goes through ``command_decode`` itself."""
    if raw is not None:
        try:
            envelope = _command_envelope_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
            pass  # the general path raises with its exact message (or accepts: never stricter here)
        else:
            if envelope.event_type in COMMAND_EVENT_TYPES and _no_upcaster(
                envelope.event_type, envelope.event_version
            ):
                return envelope, envelope.payload.command
    return command_decode(raw)


class _OutputEnvelope(msgspec.Struct):
    """``events.EventEnvelope``'s wire form (same fields, same order), built positionally, unvalidated."""

    schema: int
    event_id: str
    event_type: str
    event_version: int
    aggregate_type: str
    aggregate_id: str
    sequence: int
    occurred_at: datetime
    correlation_id: uuid.UUID | None
    causation_id: uuid.UUID | None
    payload: Any  # a dict, or the spliced payload as msgspec.Raw


assert _OutputEnvelope.__struct_fields__ == events.EventEnvelope.__struct_fields__
_output_encoder = msgspec.json.Encoder(decimal_format="string")  # the configuration of events.encode
_SCHEMA = events.ENVELOPE_SCHEMA_VERSION
_namespace_sha1 = hashlib.sha1(ENGINE_NAMESPACE.bytes, usedforsecurity=False)

MARKET_NONE, MARKET_TRADES, MARKET_BOOK = 0, 1, 2
_TEXT_MEMO_MAX = 1 << 16  # entries per memo: bounded memory, cleared when full


def _uuid5_text(name: str) -> str:
    """``str(uuid.uuid5(ENGINE_NAMESPACE, name))`` without building a UUID object."""
    digest = _namespace_sha1.copy()
    digest.update(name.encode())
    h = digest.hexdigest()
    # Version nibble 5; the variant's top two bits 10 (RFC 4122): "89ab"[low two bits of that nibble].
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


@dataclass(frozen=True, slots=True)
class _EventPlan:
    """What ``event_payload`` does to one event type, worked out once from its fields.

    The payload is the event's own JSON (``to_builtins`` keeps field order, and every event field is a
    scalar) with the id fields origin-qualified in place and the decimal twins (then ``filled_at``)
    appended, so it is spliced as bytes. ``splice`` is False when a twin's name is itself a field (the dict
    path then overwrites it in place, exactly as ``event_payload`` does).
    """

    event_type: str
    ids: tuple[str, ...]  # origin-qualified id fields
    twins: tuple[tuple[str, str, int, bool, dict[int, str]], ...]  # key, twin, places, 0 is absent, memo
    splice_twins: tuple[tuple[str, bytes, bool, dict[int, bytes]], ...]  # key, b',"twin":', 0 absent, memo
    filled_at: bool
    market: int
    splice: bool


_plans: dict[type[Event], _EventPlan] = {}
_text_memo: dict[int, dict[int, str]] = {4: {}, 9: {}}
_json_memo: dict[int, dict[int, bytes]] = {4: {}, 9: {}}  # the same texts as JSON strings


def _event_plan(kind: type[Event]) -> _EventPlan:
    fields = kind.__struct_fields__
    scaled = [key for key in fields if key.endswith("_e4") or key.endswith("_e9")]
    market = (
        MARKET_TRADES
        if issubclass(kind, TradeExecuted)
        else MARKET_BOOK
        if issubclass(kind, BookLevelChanged)
        else MARKET_NONE
    )
    plan = _EventPlan(
        event_type=f"engine.{kind.__name__}",
        ids=tuple(key for key in ("fill_id", "trade_id") if key in fields),
        twins=tuple(
            (key, key[:-3], int(key[-1]), key in _ZERO_IS_ABSENT, _text_memo[int(key[-1])]) for key in scaled
        ),
        splice_twins=tuple(
            (key, b',"' + key[:-3].encode() + b'":', key in _ZERO_IS_ABSENT, _json_memo[int(key[-1])])
            for key in scaled
        ),
        filled_at=issubclass(kind, OrderFilled | TradeExecuted),
        market=market,
        splice=not any(key[:-3] in fields or key[:-3] == "filled_at" for key in scaled)
        and "filled_at" not in fields,
    )
    _plans[kind] = plan
    return plan


def _payload_dict(event: Event, plan: _EventPlan, prefix: str, filled_at: str) -> dict[str, Any]:
    """``event_payload`` for plans that cannot be spliced (same steps, same order)."""
    data: dict[str, Any] = msgspec.to_builtins(event)
    for id_key in plan.ids:
        data[id_key] = prefix + data[id_key]
    for field_key, twin, places, zero_absent, _memo in plan.twins:
        value = data[field_key]
        data[twin] = None if zero_absent and value == 0 else scaled_text(value, places)
    if plan.filled_at:
        data["filled_at"] = filled_at
    return data


def command_records(
    produced: list[Event], *, origin: Origin, command: events.EventEnvelope | CommandEnvelope, key: str
) -> list[tuple[str, bytes, int]]:
    """(record key, encoded envelope, MARKET_*) per event: bytes equal to ``events.encode(event_envelope(...))``."""
    out: list[tuple[str, bytes, int]] = []
    if not produced:
        return out
    occurred_at, correlation_id, causation_id = command.occurred_at, command.correlation_id, command.event_id
    filled_at = b',"filled_at":' + _output_encoder.encode(occurred_at)
    tag, incarnation, prefix = origin.tag, origin.incarnation, origin.id_prefix
    encode = _output_encoder.encode
    for index, event in enumerate(produced):
        plan = _plans.get(type(event)) or _event_plan(type(event))
        payload: Any
        if plan.splice:
            body = encode(event)
            for id_key in plan.ids:
                needle = b'"' + id_key.encode() + b'":"'
                body = body.replace(needle, needle + prefix, 1)
            parts = [body[:-1]]
            for field_key, twin_key, zero_absent, memo in plan.splice_twins:
                value = getattr(event, field_key)
                if zero_absent and value == 0:
                    parts.append(twin_key + b"null")
                    continue
                text = memo.get(value)
                if text is None:
                    if len(memo) >= _TEXT_MEMO_MAX:
                        memo.clear()
                    text = memo[value] = b'"' + scaled_text(value, int(field_key[-1])).encode() + b'"'
                parts.append(twin_key + text)
            if plan.filled_at:
                parts.append(filled_at)
            parts.append(b"}")
            payload = msgspec.Raw(b"".join(parts))
        else:
            payload = _payload_dict(event, plan, prefix.decode(), msgspec.to_builtins(occurred_at))
        symbol, book_seq = event.symbol, event.book_seq
        if book_seq > 0:
            envelope = _OutputEnvelope(
                _SCHEMA, _uuid5_text(f"{incarnation}:{symbol}:{book_seq}:{index}"), plan.event_type, 1, "book", symbol,
                book_seq, occurred_at, correlation_id, causation_id, payload,
            )  # fmt: skip
        else:
            envelope = _OutputEnvelope(
                _SCHEMA, _uuid5_text(f"{tag}:{event.seq}:{index}"), plan.event_type, 1, "engine_partition",
                tag, event.seq + 1, occurred_at, correlation_id, causation_id, payload,
            )  # fmt: skip
        out.append((symbol or key, encode(envelope), plan.market))
    return out


# ----------------------------------------------------------------------------------- snapshots


def snapshot_encode(*, origin: Origin, engine: AnyEngine) -> bytes:
    data = engine.snapshot()
    record = SnapshotRecord(origin.partition, engine.last_seq, engine.state_hash(), data, origin.incarnation)
    return _snapshot_encoder.encode(record)


def snapshot_decode(raw: bytes) -> SnapshotRecord:
    return _snapshot_decoder.decode(raw)


def snapshot_key(partition: int) -> str:
    return f"p{partition}"


def snapshot_load(*, topic: str, partition: int, timeout: float = 30.0) -> SnapshotRecord | None:
    """The latest committed snapshot of a command partition (read to the end of its snapshot partition)."""
    key = snapshot_key(partition).encode()
    latest: bytes | None = None
    for record in kafka.topic_read_to_end(
        topic, partitions=[partition], timeout=timeout, group_prefix="engine-snapshot-reader"
    ):
        if record.key == key:
            latest = record.value
    return None if latest is None else snapshot_decode(latest)


# ----------------------------------------------------------------------------------- the process


# A record to produce: (physical topic, key, value).
Record = tuple[str, str, bytes]


@dataclass(slots=True)
class PartitionState:
    partition: int
    origin: Origin
    engine: AnyEngine
    producer: Producer
    resume_at: int  # committed input position at recovery: output below it was committed already
    position: int  # next input offset to consume
    restored_from: int | None  # seq of the snapshot recovery started from
    since_snapshot: int = 0
    snapshot_seq: int = -1
    suppressed: int = 0  # replayed commands whose output was suppressed
    processed: int = 0
    # The current window: non-replayed commands applied since the last commit was started.
    window: int = 0
    window_started: float = 0.0
    window_outputs: int = 0
    txn_open: bool = False  # begin_transaction called and the window's records produced into it
    held: list[Record] = field(default_factory=list)  # window records waiting for the commit in flight
    committing: Future[int | None] | None = None  # the previous window's commit (result: snapshot seq)
    commit_started: float | None = None  # start of the commit in flight (async or exit): the watchdog's bound
    commands: CommandWindow = field(default_factory=CommandWindow)  # recent event ids: republished copies


@dataclass(slots=True)
class RunStats:
    processed: int = 0
    outputs: int = 0
    suppressed: int = 0
    dead_lettered: int = 0
    duplicates: int = 0  # republished commands not applied again (``CommandWindow``)
    snapshots: int = 0
    transactions: int = 0
    startup_seconds: float = 0.0  # fencing, snapshot load and restore of every owned partition
    recoveries: dict[int, int | None] = field(default_factory=dict)
    largest_transaction: int = 0  # most commands in one transaction
    commit_wait_seconds: float = 0.0  # main loop blocked on a commit in flight (window full or shutdown)


# Most messages one consume() call returns; a transaction may span several calls.
POLL_MAX = 1000


class EngineRunner:
    """Owns a set of command partitions: one engine and one transactional producer per partition.

    Transactions (per partition): a window opens at the first non-replayed command and closes when it holds
    ``batch_size`` commands, ``batch_ms`` after it opened, or as soon as a poll finds no more input, whichever
    comes first. Its records are produced into the open transaction as they are made (the network overlaps
    the matching); closing it sends the offsets and commits in a worker thread while the next window fills
    (its records are held until that commit returns): at most one commit in flight per partition.
    """

    def __init__(
        self,
        *,
        partitions: Iterable[int],
        topics: EngineTopics | None = None,
        group: str = "engine",
        snapshot_every: int = 1000,
        batch_size: int = 5000,
        batch_ms: float = 20.0,
        poll_timeout: float = 0.2,
        snapshot_on_exit: bool = True,
        stall_timeout: float | None = None,
        snapshot_max_bytes: int = SNAPSHOT_MAX_BYTES,
        duplicate_window: int = DUPLICATE_WINDOW,
        implementation: str | None = None,
    ) -> None:
        self.engine_class: EngineClass = engine_class(implementation)
        self.partitions = sorted(set(partitions))
        if not self.partitions:
            raise ValueError("an engine process needs at least one partition")
        if batch_size < 1 or batch_ms <= 0:
            raise ValueError("batch_size and batch_ms must be positive")
        self.topics = topics or EngineTopics()
        self.group = group
        self.snapshot_every = snapshot_every
        self.batch_size = batch_size
        self.batch_seconds = batch_ms / 1000
        self.poll_timeout = poll_timeout
        self.snapshot_on_exit = snapshot_on_exit
        self.stall_timeout = stall_timeout
        self.snapshot_max_bytes = snapshot_max_bytes
        self.duplicate_window = duplicate_window
        self._progress_at = time.monotonic()  # last time the input moved or was known to be fully consumed
        self._progress_positions: dict[int, int] = {}
        self.stopping = threading.Event()
        self._finished = threading.Event()  # shutdown done: the watchdog's end (it also bounds the shutdown)
        self.states: dict[int, PartitionState] = {}
        self.stats = RunStats()
        self._consumer: Consumer | None = None
        self.incarnation = ""  # the command topic's id, read by start()
        self._group_metadata: Any = None
        self._pool = ThreadPoolExecutor(max_workers=len(self.partitions), thread_name_prefix="engine-txn")
        self._stats_lock = threading.Lock()
        # Partitions rebuilt and re-seeked during the current poll: the rest of that poll's messages for them
        # predate the seek and are dropped (consume() after a seek returns only post-seek messages).
        self._reseeked: set[int] = set()
        self._commands_physical = kafka.topic_name(self.topics.commands)
        t = self.topics
        self._physical = {
            name: kafka.topic_name(name) for name in (t.events, t.trades, t.book, t.snapshots, t.dead_letters)
        }
        self._market = {MARKET_TRADES: self._physical[t.trades], MARKET_BOOK: self._physical[t.book]}

    # -- lifecycle
    def transactional_id(self, partition: int) -> str:
        return f"{kafka.kafka_settings()['TOPIC_PREFIX']}{self.group}-p{partition}"

    def stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        logger.info("engine stopping", extra={"signal": signum, "partitions": self.partitions})
        self.stopping.set()

    def start(self) -> None:
        """Create the consumer, recover every owned partition and start fetching."""
        self._consumer = kafka.consumer_create(group_id=self.group)
        self._group_metadata = self._consumer.consumer_group_metadata()
        self.incarnation = kafka.topic_id(self.topics.commands)
        assignment: list[TopicPartition] = []
        for p in self.partitions:
            # linger 5 ms: records produced during matching leave in larger requests; a commit flushes them.
            producer = kafka.producer_create(
                **{
                    "transactional.id": self.transactional_id(p),
                    "linger.ms": 5,
                    "retry.backoff.ms": TXN_RETRY_BACKOFF_MS,
                    "retry.backoff.max.ms": TXN_RETRY_BACKOFF_MAX_MS,
                    # Room for the largest snapshot (the local size check counts it uncompressed).
                    "message.max.bytes": SNAPSHOT_MAX_BYTES + 1024 * 1024,
                }
            )
            producer.init_transactions(30)
            state = self._recover(p, producer)
            self.states[p] = state
            self._progress_at = time.monotonic()  # a slow but moving start-up is not a stall
            assignment.append(TopicPartition(self._commands_physical, p, state.position))
        self._consumer.assign(assignment)
        logger.info(
            "engine ready",
            extra={
                "implementation": self.engine_class.__module__,
                "partitions": self.partitions,
                "resume_at": {p: s.resume_at for p, s in self.states.items()},
                "restored_from": {p: s.restored_from for p, s in self.states.items()},
            },
        )

    def _recover(self, p: int, producer: Producer) -> PartitionState:
        assert self._consumer is not None
        committed = self._consumer.committed([TopicPartition(self._commands_physical, p)], timeout=30)[
            0
        ].offset
        resume_at = max(committed, 0)
        origin = Origin(self.incarnation, p)
        snap = snapshot_load(topic=self.topics.snapshots, partition=p)
        if snap is not None and snap.incarnation != origin.incarnation:
            # Its seq is an offset of another incarnation of the command topic (the topics were created again
            # and the snapshot topic kept): restoring it would skip this incarnation's first commands.
            logger.error(
                "engine snapshot of another command topic ignored",
                extra={
                    "partition": p,
                    "snapshot_incarnation": snap.incarnation,
                    "incarnation": origin.incarnation,
                },
            )
            snap = None
        if snap is not None and snap.seq >= resume_at:
            raise RuntimeError(f"snapshot seq {snap.seq} is not below committed offset {resume_at}")
        engine = self.engine_class.restore(snap.engine) if snap is not None else self.engine_class()
        if snap is not None and engine.state_hash() != snap.state_hash:
            raise RuntimeError(f"snapshot of partition {p} does not match its state hash")
        if snap is not None:
            position = snap.seq + 1
        else:
            position, _high = self._consumer.get_watermark_offsets(
                TopicPartition(self._commands_physical, p), timeout=10, cached=False
            )
        self.stats.recoveries[p] = None if snap is None else snap.seq
        return PartitionState(
            partition=p,
            origin=origin,
            engine=engine,
            producer=producer,
            resume_at=resume_at,
            position=position,
            restored_from=None if snap is None else snap.seq,
            snapshot_seq=-1 if snap is None else snap.seq,
            commands=self._window_rebuild(p, position),
        )

    def _window_rebuild(self, p: int, position: int) -> CommandWindow:
        """The partition's ``CommandWindow`` as it stood before ``position``: its previous offsets read back."""
        window = CommandWindow(self.duplicate_window)
        first = max(position - window.size, 0)
        if position > first:
            for record in kafka.topic_read_to_end(
                self.topics.commands,
                partitions=[p],
                start={p: first},
                stop={p: position},
                timeout=120,
                group_prefix="engine-window",
            ):
                window.repeats(record.offset, command_event_id(record.value))
        return window

    def run(
        self,
        *,
        idle_timeout: float | None = None,
        until_caught_up: bool = False,
        install_signals: bool = True,
    ) -> RunStats:
        """Process until stopped (SIGTERM/SIGINT), idle for ``idle_timeout`` s, or caught up with the input."""
        previous: dict[signal.Signals, Any] = {}
        if install_signals and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, self.stop)
        try:
            return self._run(idle_timeout=idle_timeout, until_caught_up=until_caught_up)
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    # -- liveness
    def _watchdog(self) -> None:
        """Exit the process when the main loop has shown no progress for ``stall_timeout`` s (any cause)."""
        assert self.stall_timeout is not None
        while not self._finished.wait(min(1.0, self.stall_timeout / 4)):
            now = time.monotonic()
            reason = stall_reason(
                now=now,
                # Once stopping, input is no longer read; the shutdown's commits stay bounded.
                progress_at=now if self.stopping.is_set() else self._progress_at,
                commits_started=[
                    started for s in list(self.states.values()) if (started := s.commit_started) is not None
                ],
                stall_timeout=self.stall_timeout,
            )
            if reason is not None:
                logger.critical(
                    "engine stalled, exiting for a restart",
                    extra={"partitions": self.partitions, "reason": reason},
                )
                for handler in logging.getLogger().handlers:
                    handler.flush()
                sys.stderr.flush()
                os._exit(STALL_EXIT_CODE)  # the main thread may be blocked in librdkafka: no orderly exit

    def _progress_check(self) -> None:
        """Progress = some position moved since the last check, or nothing is waiting on any partition."""
        positions = {p: s.position for p, s in self.states.items()}
        if positions != self._progress_positions:
            self._progress_positions = positions
            self._progress_at = time.monotonic()
            return
        assert self._consumer is not None
        try:
            ends = self._end_offsets(timeout=5)
        except KafkaException as exc:
            logger.warning("engine cannot read input end offsets", extra={"error": str(exc)})
            return  # unknown lag is not progress
        if all(positions[p] >= end for p, end in ends.items()):
            self._progress_at = time.monotonic()

    def _run(self, *, idle_timeout: float | None, until_caught_up: bool) -> RunStats:
        started = time.monotonic()
        self._finished.clear()
        if self.stall_timeout is not None:
            self._progress_at = started
            threading.Thread(target=self._watchdog, name="engine-watchdog", daemon=True).start()
        self.start()
        self.stats.startup_seconds = time.monotonic() - started
        assert self._consumer is not None
        ends = self._end_offsets() if until_caught_up else {}
        last_message = time.monotonic()
        next_check = time.monotonic()
        orderly = False
        try:
            while not self.stopping.is_set():
                if self.stall_timeout is not None and time.monotonic() >= next_check:
                    self._progress_check()
                    next_check = time.monotonic() + min(5.0, self.stall_timeout / 4)
                self._reap()
                if ends and all(self.states[p].position >= end for p, end in ends.items()):
                    break
                states = self.states.values()
                if any(s.window and s.committing is None for s in states):
                    timeout = 0.0  # a window is open: take what is fetched, close it when nothing is
                elif any(s.committing is not None for s in states):
                    timeout = 0.002  # come back soon to start the next window once a commit returns
                else:
                    timeout = self.poll_timeout
                msgs = self._poll(timeout)
                self._reseeked.clear()
                if msgs:
                    last_message = time.monotonic()
                    for msg in msgs:
                        if msg.error() is not None:
                            logger.warning("engine consume error", extra={"error": str(msg.error())})
                            continue
                        self._take(self.states[msg.partition() or 0], msg)
                elif idle_timeout is not None and time.monotonic() - last_message >= idle_timeout:
                    break
                now = time.monotonic()
                for state in self.states.values():
                    if state.window and state.committing is None:
                        full = state.window >= self.batch_size
                        if not msgs or full or now - state.window_started >= self.batch_seconds:
                            self._close(state)
            orderly = True
        finally:
            self.shutdown(drain=orderly)
        return self.stats

    def _poll(self, timeout: float) -> list[Message]:
        """Up to POLL_MAX fetched messages, returning as soon as one is there (``kafka.consume_ready``)."""
        assert self._consumer is not None
        return kafka.consume_ready(self._consumer, POLL_MAX, timeout)

    def _end_offsets(self, timeout: float = 10) -> dict[int, int]:
        assert self._consumer is not None
        ends: dict[int, int] = {}
        for p in self.partitions:
            _low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self._commands_physical, p), timeout=timeout, cached=False
            )
            ends[p] = high
        return ends

    def shutdown(self, *, drain: bool = True) -> None:
        """Commit every applied window and snapshot every partition that moved since its last snapshot, close.

        ``drain=False`` (the loop raised): nothing more is committed; open transactions die with the
        producer (aborted by the next owner's ``init_transactions``), so a restart replays them.
        """
        if self._consumer is None:
            self._finished.set()
            return
        try:
            self._shutdown(drain=drain)
        finally:
            self._finished.set()

    def _shutdown(self, *, drain: bool) -> None:
        assert self._consumer is not None
        for state in list(self.states.values()):
            try:
                if drain:
                    self._reap(state, wait=True)
                    state = self.states[state.partition]  # a failed commit rebuilt it
                    if state.window:
                        self._close(state)
                        self._reap(state, wait=True)
                        state = self.states[state.partition]
                    moved = state.engine.last_seq >= 0 and state.engine.last_seq != state.snapshot_seq
                    if self.snapshot_on_exit and moved and not state.window:
                        self._transaction(state, [], snapshot=True)
                state.producer.flush(10)
            except KafkaException:
                logger.exception("engine final commit failed", extra={"partition": state.partition})
        self._consumer.close()
        self._consumer = None
        self._pool.shutdown(wait=True)
        logger.info(
            "engine stopped", extra={"partitions": self.partitions, "processed": self.stats.processed}
        )

    # -- processing
    def _take(self, state: PartitionState, msg: Message) -> None:
        """Apply one command; its records join the partition's window (produced now, or held)."""
        offset = msg.offset()
        assert offset is not None
        if offset < state.position or state.partition in self._reseeked:
            return  # already applied, or fetched before a re-seek
        if state.window >= self.batch_size:  # the window is full: its transaction must go first
            if state.committing is not None:
                self._reap(state, wait=True)
            if self.states[state.partition] is state and state.window >= self.batch_size:
                self._close(state)
                self._reap(state, wait=True)  # one commit in flight at most
            if self.states[state.partition] is not state:
                return  # a commit failed: the partition was rebuilt and re-seeked
        records = self._apply(state, msg, offset)
        if offset < state.resume_at:
            return  # replay below the committed offset: no window, nothing to publish
        if not state.window:
            state.window_started = time.monotonic()
        state.window += 1
        state.window_outputs += len(records)
        if state.committing is not None:
            state.held.extend(records)
            return
        if not state.txn_open:
            state.producer.begin_transaction()
            state.txn_open = True
        for record in records:
            self._produce(state.producer, record)

    def _apply(self, state: PartitionState, msg: Message, offset: int) -> list[Record]:
        state.position = offset + 1
        key = (msg.key() or b"").decode("utf-8", "replace")
        suppressed = offset < state.resume_at
        raw = msg.value()
        undecodable: UndecodableCommand | None = None
        event_id: int | None
        try:
            envelope, command = command_decode_fast(raw)
            event_id = envelope.event_id.int  # decoded once: the window reads the same id
        except UndecodableCommand as exc:
            undecodable, event_id = exc, command_event_id(raw)
        if state.commands.repeats(offset, event_id):
            self.stats.duplicates += 1
            if not suppressed:
                logger.warning("engine skipped a republished command", extra={"offset": offset, "key": key})
            return []
        if undecodable is not None:
            if suppressed:
                return []
            self.stats.dead_lettered += 1
            logger.warning(
                "engine dead-lettered a command", extra={"offset": offset, "error": str(undecodable)}
            )
            return [(self._physical[self.topics.dead_letters], key, raw or b"")]
        produced = state.engine.apply(offset, command)
        state.since_snapshot += 1
        state.processed += 1
        self.stats.processed += 1
        if suppressed:
            state.suppressed += 1
            self.stats.suppressed += 1
            return []
        events_topic, market = self._physical[self.topics.events], self._market
        out: list[Record] = []
        for record_key, value, kind in command_records(
            produced, origin=state.origin, command=envelope, key=key
        ):
            out.append((events_topic, record_key, value))
            if kind:
                out.append((market[kind], record_key, value))
        return out

    def _close(self, state: PartitionState) -> None:
        """Close the partition's window: produce the snapshot if due, then commit in a worker thread."""
        assert state.committing is None
        assert state.window
        if not state.txn_open:
            state.producer.begin_transaction()
            state.txn_open = True
        for record in state.held:
            self._produce(state.producer, record)
        state.held.clear()
        snapshot_seq: int | None = None
        if state.since_snapshot >= self.snapshot_every:
            # The engine stands exactly at the window's end here: later input is applied only after this.
            if self._produce_snapshot(state):
                snapshot_seq = state.engine.last_seq
            state.since_snapshot = 0
        position = max(state.position, state.resume_at)
        commands, outputs = state.window, state.window_outputs
        state.window, state.window_outputs = 0, 0
        state.commit_started = time.monotonic()
        state.committing = self._pool.submit(
            self._commit_window, state, position, snapshot_seq, commands, outputs
        )

    def _commit_window(
        self, state: PartitionState, position: int, snapshot_seq: int | None, commands: int, outputs: int
    ) -> int | None:
        """(Worker thread) send the window's end offset and commit; the window's records are produced."""
        self._send_offsets_and_commit(state, position)
        state.txn_open = False
        with self._stats_lock:  # commits of several partitions finish concurrently
            self.stats.transactions += 1
            self.stats.outputs += outputs
            self.stats.largest_transaction = max(self.stats.largest_transaction, commands)
        return snapshot_seq

    def _send_offsets_and_commit(self, state: PartitionState, position: int) -> None:
        """Add the input position to the open transaction and commit it, retrying what librdkafka says to retry.

        A retriable error (the coordinator unreachable for a moment: ``_TRANSPORT`` "after 0ms" right after a
        broker restart, seen under chaos) is retried with the same offsets and group metadata, as librdkafka asks;
        each call keeps its own bound and the watchdog bounds the whole (``COMMIT_STALL_S``). An abortable, fatal
        or fenced error is raised for ``_reap``: before, a retriable one was too, and the process exited for a
        restart on every such blip.
        """
        offsets = [TopicPartition(self._commands_physical, state.partition, position)]
        producer = state.producer
        _txn_retrying(
            lambda: producer.send_offsets_to_transaction(offsets, self._group_metadata, TXN_TIMEOUT_S),
            state.partition,
        )
        _txn_retrying(lambda: producer.commit_transaction(TXN_TIMEOUT_S), state.partition)

    def _reap(self, only: PartitionState | None = None, *, wait: bool = False) -> None:
        """Finish returned commits (or wait for ``only``'s): start the next window, or recover on failure."""
        for state in [only] if only is not None else list(self.states.values()):
            future = state.committing
            if future is None or not (wait or future.done()):
                continue
            if wait and not future.done():
                waited = time.monotonic()
                futures_wait([future])
                self.stats.commit_wait_seconds += time.monotonic() - waited
            state.committing = None
            state.commit_started = None
            try:
                snapshot_seq = future.result()
            except KafkaException as exc:
                self._transaction_failed(state, exc)
                continue
            if snapshot_seq is not None:
                state.snapshot_seq = snapshot_seq
                with self._stats_lock:
                    self.stats.snapshots += 1
            if state.window:  # commands applied while the commit was in flight: their transaction starts
                state.producer.begin_transaction()
                state.txn_open = True
                for record in state.held:
                    self._produce(state.producer, record)
                state.held.clear()

    def _produce_snapshot(self, state: PartitionState) -> bool:
        """Produce the partition's snapshot into the open transaction; False when it is too large to write."""
        value = snapshot_encode(origin=state.origin, engine=state.engine)
        if len(value) > self.snapshot_max_bytes:
            logger.error(
                "engine snapshot too large to write; recovery replays from the previous one",
                extra={"partition": state.partition, "bytes": len(value), "limit": self.snapshot_max_bytes},
            )
            return False
        state.producer.produce(
            self._physical[self.topics.snapshots],
            key=snapshot_key(state.partition).encode(),
            value=value,
            partition=state.partition,
        )
        return True

    def _transaction(self, state: PartitionState, records: list[Record], *, snapshot: bool) -> None:
        """One synchronous transaction (the exit snapshot): records, optional snapshot, offsets."""
        assert state.committing is None
        assert not state.txn_open
        state.commit_started = time.monotonic()
        try:
            producer = state.producer
            producer.begin_transaction()
            for record in records:
                self._produce(producer, record)
            if snapshot:
                snapshot = self._produce_snapshot(state)
            self._send_offsets_and_commit(state, max(state.position, state.resume_at))
        finally:
            state.commit_started = None
        if snapshot:
            state.since_snapshot = 0
            state.snapshot_seq = state.engine.last_seq
        with self._stats_lock:
            self.stats.transactions += 1
            self.stats.outputs += len(records)
            self.stats.snapshots += int(snapshot)

    @staticmethod
    def _produce(producer: Producer, record: Record) -> None:
        topic, key, value = record
        while True:
            try:
                producer.produce(topic, value, key)
                return
            except BufferError:
                producer.poll(0.05)  # local queue full: let deliveries drain

    def _transaction_failed(self, state: PartitionState, exc: KafkaException) -> None:
        """Abort and rebuild the partition from its snapshot: the engine already applied the window (and more)."""
        error = kafka.kafka_error(exc)
        if error is None or not error.txn_requires_abort():
            raise exc  # fenced or fatal: another process owns the partition now
        logger.warning(
            "engine transaction aborted", extra={"partition": state.partition, "error": str(error)}
        )
        state.producer.abort_transaction(30)
        assert self._consumer is not None
        fresh = self._recover(state.partition, state.producer)
        self.states[state.partition] = fresh
        self._reseeked.add(state.partition)
        self._consumer.seek(TopicPartition(self._commands_physical, state.partition, fresh.position))
