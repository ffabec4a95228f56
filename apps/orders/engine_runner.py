"""The matching-engine process: ``orders.commands`` -> ``engine.Engine`` -> ``orders.events``, exactly once.

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
- Recovery: restore the partition's latest snapshot (``engine.snapshots``, key ``p{partition}``, written to
  snapshot partition = command partition), seek to ``snapshot.seq + 1`` and replay. Commands below the
  committed offset are applied to rebuild state but their output is suppressed (it was committed already), and
  no offset below the committed one is ever committed again.
- Undecodable commands go to the dead-letter topic inside the same transaction and are skipped (never applied).
- Nothing here reads a clock: ``occurred_at``/``filled_at`` of an output is the command's ``occurred_at``.
- Liveness (``stall_timeout``): a process that makes no input progress for that long while input is waiting (or
  the broker cannot say), or whose main loop is blocked in a call, logs ``engine stalled`` and exits with
  ``STALL_EXIT_CODE`` so its supervisor restarts it; recovery above makes the restart exactly-once. (A broker
  killed with -9 and restarted could leave the process alive but never progressing, orders left pending.)
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
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
from engine.commands import (
    AnyCommand,
    CancelOrder,
    Command,
    NewOrder,
    ReplaceOrder,
    SplitApply,
)
from engine.engine import Engine
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
    """Value of an ``engine.snapshots`` record: the engine after applying input offset ``seq``."""

    partition: int
    seq: int
    state_hash: str
    engine: bytes


# Exit status of a stalled process (EX_SOFTWARE): distinct from a crash's traceback exit 1.
STALL_EXIT_CODE = 70

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


def event_payload(event: Event, *, partition: int, command: events.EventEnvelope) -> dict[str, Any]:
    """The engine event as builtins, each ``*_e4``/``*_e9`` int also as an exact decimal string.

    The engine's ``fill_id``/``trade_id`` (``"{offset}:{n}[:b|s]"``) are unique within a partition only, so
    they are qualified with it here: ``"p{partition}:{offset}:{n}[:b|s]"`` is unique platform-wide.
    """
    data: dict[str, Any] = msgspec.to_builtins(event)
    for key in ("fill_id", "trade_id"):
        if key in data:
            data[key] = f"p{partition}:{data[key]}"
    for key, value in list(data.items()):
        if key.endswith("_e4") or key.endswith("_e9"):
            places = 4 if key.endswith("_e4") else 9
            absent = value == 0 and key in _ZERO_IS_ABSENT
            data[key[:-3]] = None if absent else scaled_text(value, places)
    if isinstance(event, OrderFilled | TradeExecuted):
        data["filled_at"] = msgspec.to_builtins(command.occurred_at)
    return data


def event_envelope(
    event: Event, index: int, *, partition: int, command: events.EventEnvelope
) -> events.EventEnvelope:
    """The output envelope of the ``index``-th event a command produced (deterministic, see module doc)."""
    if event.book_seq > 0:
        aggregate_type, aggregate_id, sequence = "book", event.symbol, event.book_seq
        event_id = uuid.uuid5(ENGINE_NAMESPACE, f"{event.symbol}:{event.book_seq}:{index}")
    else:
        # A reject that belongs to no book (unknown order id): numbered by input position instead.
        aggregate_type, aggregate_id, sequence = "engine_partition", f"p{partition}", event.seq + 1
        event_id = uuid.uuid5(ENGINE_NAMESPACE, f"p{partition}:{event.seq}:{index}")
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
        payload=event_payload(event, partition=partition, command=command),
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
    partition: int,
    command: events.EventEnvelope,
    key: str,
    topics: EngineTopics,
) -> list[Output]:
    """Every record one applied command produces: orders.events, plus trades and L2 for market data."""
    out: list[Output] = []
    for index, event in enumerate(produced):
        value = events.encode(event_envelope(event, index, partition=partition, command=command))
        record_key = event.symbol or key
        out.append(Output(topics.events, record_key, value))
        if isinstance(event, TradeExecuted):
            out.append(Output(topics.trades, record_key, value))
        elif isinstance(event, BookLevelChanged):
            out.append(Output(topics.book, record_key, value))
    return out


# ----------------------------------------------------------------------------------- snapshots


def snapshot_encode(*, partition: int, engine: Engine) -> bytes:
    data = engine.snapshot()
    return _snapshot_encoder.encode(SnapshotRecord(partition, engine.last_seq, engine.state_hash(), data))


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


@dataclass(slots=True)
class PartitionState:
    partition: int
    engine: Engine
    producer: Producer
    resume_at: int  # committed input position at recovery: output below it was committed already
    position: int  # next input offset to consume
    restored_from: int | None  # seq of the snapshot recovery started from
    since_snapshot: int = 0
    snapshot_seq: int = -1
    suppressed: int = 0  # replayed commands whose output was suppressed
    processed: int = 0


@dataclass(slots=True)
class RunStats:
    processed: int = 0
    outputs: int = 0
    suppressed: int = 0
    dead_lettered: int = 0
    snapshots: int = 0
    transactions: int = 0
    startup_seconds: float = 0.0  # fencing, snapshot load and restore of every owned partition
    recoveries: dict[int, int | None] = field(default_factory=dict)


class EngineRunner:
    """Owns a set of command partitions: one engine and one transactional producer per partition."""

    def __init__(
        self,
        *,
        partitions: Iterable[int],
        topics: EngineTopics | None = None,
        group: str = "engine",
        snapshot_every: int = 1000,
        batch_size: int = 500,
        poll_timeout: float = 0.2,
        snapshot_on_exit: bool = True,
        stall_timeout: float | None = None,
    ) -> None:
        self.partitions = sorted(set(partitions))
        if not self.partitions:
            raise ValueError("an engine process needs at least one partition")
        self.topics = topics or EngineTopics()
        self.group = group
        self.snapshot_every = snapshot_every
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.snapshot_on_exit = snapshot_on_exit
        self.stall_timeout = stall_timeout
        self._progress_at = time.monotonic()  # last time the input moved or was known to be fully consumed
        self._progress_positions: dict[int, int] = {}
        self.stopping = threading.Event()
        self.states: dict[int, PartitionState] = {}
        self.stats = RunStats()
        self._consumer: Consumer | None = None
        self._pool = ThreadPoolExecutor(max_workers=len(self.partitions), thread_name_prefix="engine-txn")
        self._stats_lock = threading.Lock()
        self._commands_physical = kafka.topic_name(self.topics.commands)

    # -- lifecycle
    def transactional_id(self, partition: int) -> str:
        return f"{kafka.kafka_settings()['TOPIC_PREFIX']}{self.group}-p{partition}"

    def stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        logger.info("engine stopping", extra={"signal": signum, "partitions": self.partitions})
        self.stopping.set()

    def start(self) -> None:
        """Create the consumer, recover every owned partition and start fetching."""
        self._consumer = kafka.consumer_create(group_id=self.group)
        assignment: list[TopicPartition] = []
        for p in self.partitions:
            producer = kafka.producer_create(**{"transactional.id": self.transactional_id(p), "linger.ms": 1})
            producer.init_transactions(30)
            state = self._recover(p, producer)
            self.states[p] = state
            self._progress_at = time.monotonic()  # a slow but moving start-up is not a stall
            assignment.append(TopicPartition(self._commands_physical, p, state.position))
        self._consumer.assign(assignment)
        logger.info(
            "engine ready",
            extra={
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
        snap = snapshot_load(topic=self.topics.snapshots, partition=p)
        if snap is not None and snap.seq >= resume_at:
            raise RuntimeError(f"snapshot seq {snap.seq} is not below committed offset {resume_at}")
        engine = Engine.restore(snap.engine) if snap is not None else Engine()
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
            engine=engine,
            producer=producer,
            resume_at=resume_at,
            position=position,
            restored_from=None if snap is None else snap.seq,
            snapshot_seq=-1 if snap is None else snap.seq,
        )

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
        while not self.stopping.wait(min(1.0, self.stall_timeout / 4)):
            stalled = time.monotonic() - self._progress_at
            if stalled > self.stall_timeout:
                logger.critical(
                    "engine stalled: no input progress, exiting for a restart",
                    extra={"partitions": self.partitions, "stalled_s": round(stalled, 1)},
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
        if self.stall_timeout is not None:
            self._progress_at = started
            threading.Thread(target=self._watchdog, name="engine-watchdog", daemon=True).start()
        self.start()
        self.stats.startup_seconds = time.monotonic() - started
        assert self._consumer is not None
        ends = self._end_offsets() if until_caught_up else {}
        last_message = time.monotonic()
        next_check = time.monotonic()
        try:
            while not self.stopping.is_set():
                if self.stall_timeout is not None and time.monotonic() >= next_check:
                    self._progress_check()
                    next_check = time.monotonic() + min(5.0, self.stall_timeout / 4)
                if ends and all(self.states[p].position >= end for p, end in ends.items()):
                    break
                msgs = self._consumer.consume(self.batch_size, self.poll_timeout)
                if not msgs:
                    if idle_timeout is not None and time.monotonic() - last_message >= idle_timeout:
                        break
                    continue
                last_message = time.monotonic()
                by_partition: dict[int, list[Message]] = {}
                for msg in msgs:
                    err = msg.error()
                    if err is not None:
                        logger.warning("engine consume error", extra={"error": str(err)})
                        continue
                    by_partition.setdefault(msg.partition() or 0, []).append(msg)
                jobs = [self._prepare(self.states[p], by_partition[p]) for p in sorted(by_partition)]
                ready = [job for job in jobs if job is not None]
                if len(ready) > 1:  # partitions commit independently: overlap their broker round trips
                    list(self._pool.map(self._commit, ready))
                elif ready:
                    self._commit(ready[0])
        finally:
            self.shutdown()
        return self.stats

    def _end_offsets(self, timeout: float = 10) -> dict[int, int]:
        assert self._consumer is not None
        ends: dict[int, int] = {}
        for p in self.partitions:
            _low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self._commands_physical, p), timeout=timeout, cached=False
            )
            ends[p] = high
        return ends

    def shutdown(self) -> None:
        """Snapshot every partition that moved since its last snapshot (in a transaction), then close."""
        if self._consumer is None:
            return
        for state in self.states.values():
            try:
                moved = state.engine.last_seq >= 0 and state.engine.last_seq != state.snapshot_seq
                if self.snapshot_on_exit and moved:
                    self._transaction(state, [], snapshot=True)
                state.producer.flush(10)
            except KafkaException:
                logger.exception("engine final snapshot failed", extra={"partition": state.partition})
        self._consumer.close()
        self._consumer = None
        self._pool.shutdown(wait=True)
        logger.info(
            "engine stopped", extra={"partitions": self.partitions, "processed": self.stats.processed}
        )

    # -- processing
    def _prepare(
        self, state: PartitionState, msgs: list[Message]
    ) -> tuple[PartitionState, list[Output], bool] | None:
        """Apply a partition's batch; return what its transaction must hold (None: pure replay)."""
        outputs: list[Output] = []
        for msg in msgs:
            offset = msg.offset()
            assert offset is not None
            if offset < state.position:
                continue  # already applied (a fetch from before a re-seek)
            outputs.extend(self._apply(state, msg, offset))
        if state.position <= state.resume_at:
            return None  # pure replay: nothing to publish and no offset may move backwards
        return state, outputs, state.since_snapshot >= self.snapshot_every

    def _commit(self, job: tuple[PartitionState, list[Output], bool]) -> None:
        state, outputs, snapshot = job
        try:
            self._transaction(state, outputs, snapshot=snapshot)
        except KafkaException as exc:
            self._transaction_failed(state, exc)

    def _apply(self, state: PartitionState, msg: Message, offset: int) -> list[Output]:
        state.position = offset + 1
        key = (msg.key() or b"").decode("utf-8", "replace")
        suppressed = offset < state.resume_at
        try:
            envelope, command = command_decode(msg.value())
        except UndecodableCommand as exc:
            if suppressed:
                return []
            self.stats.dead_lettered += 1
            logger.warning("engine dead-lettered a command", extra={"offset": offset, "error": str(exc)})
            return [Output(self.topics.dead_letters, key, msg.value() or b"")]
        produced = state.engine.apply(offset, command)
        state.since_snapshot += 1
        state.processed += 1
        self.stats.processed += 1
        if suppressed:
            state.suppressed += 1
            self.stats.suppressed += 1
            return []
        return command_outputs(
            produced, partition=state.partition, command=envelope, key=key, topics=self.topics
        )

    def _transaction(self, state: PartitionState, outputs: list[Output], *, snapshot: bool) -> None:
        assert self._consumer is not None
        producer = state.producer
        producer.begin_transaction()
        for out in outputs:
            self._produce(producer, out)
        if snapshot:
            producer.produce(
                kafka.topic_name(self.topics.snapshots),
                key=snapshot_key(state.partition).encode(),
                value=snapshot_encode(partition=state.partition, engine=state.engine),
                partition=state.partition,
            )
        position = max(state.position, state.resume_at)
        producer.send_offsets_to_transaction(
            [TopicPartition(self._commands_physical, state.partition, position)],
            self._consumer.consumer_group_metadata(),
            30,
        )
        producer.commit_transaction(30)
        if snapshot:
            state.since_snapshot = 0
            state.snapshot_seq = state.engine.last_seq
        with self._stats_lock:
            self.stats.transactions += 1
            self.stats.outputs += len(outputs)
            self.stats.snapshots += int(snapshot)

    @staticmethod
    def _produce(producer: Producer, out: Output) -> None:
        topic = kafka.topic_name(out.topic)
        while True:
            try:
                producer.produce(topic, key=out.key.encode(), value=out.value)
                return
            except BufferError:
                producer.poll(0.05)  # local queue full: let deliveries drain

    def _transaction_failed(self, state: PartitionState, exc: KafkaException) -> None:
        """Abort and rebuild the partition from its snapshot: the engine already applied the batch."""
        error = exc.args[0] if exc.args else None
        if error is None or not error.txn_requires_abort():
            raise exc  # fenced or fatal: another process owns the partition now
        logger.warning(
            "engine transaction aborted", extra={"partition": state.partition, "error": str(error)}
        )
        state.producer.abort_transaction(30)
        assert self._consumer is not None
        fresh = self._recover(state.partition, state.producer)
        self.states[state.partition] = fresh
        self._consumer.seek(TopicPartition(self._commands_physical, state.partition, fresh.position))
