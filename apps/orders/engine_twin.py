"""The uncrashed twin: replay ``orders.commands`` into fresh in-process engines and compare with the live engine.

Used by the chaos auditor (``chaos/auditor.py``) after the platform is stopped: the live engine was killed and
recovered any number of times, the twin never was. The twin applies every committed command of every partition
in offset order through the runner's own path (``command_decode_fast`` -> ``Engine.apply(offset, command)`` ->
``command_records``; an undecodable command is skipped, as the runner dead-letters it), so by the runner's
determinism (output bytes depend only on the input position) the two must agree exactly.

Invariants checked (all reads ``read_committed`` through ``apps.core.kafka.topic_read_to_end``):
- Events: the committed ``orders.events`` records equal the twin's one for one by event id and bytes: none
  missing, none extra, none duplicated, none different, and per record key the order of the events caused by
  one command partition is the twin's (a key's records share an events partition, so that order is defined).
- State: for every command partition with input, its latest ``engine.snapshots`` record exists and its state
  hash equals the twin's after the twin applied every command up to the snapshot's ``seq``, and it was written
  for this incarnation of the command topic.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import msgspec

from apps.core import kafka
from apps.orders.engine_runner import (
    CommandWindow,
    EngineTopics,
    Origin,
    SnapshotRecord,
    UndecodableCommand,
    command_decode_fast,
    command_event_id,
    command_records,
    snapshot_load,
)
from engine.engine import Engine


class _EventId(msgspec.Struct):
    event_id: str  # other envelope fields are ignored: only the id is needed to pair records


_event_id_decoder = msgspec.json.Decoder(_EventId)


@dataclass(slots=True)
class TwinComparison:
    """What the twin and the live engine disagree on (empty lists: they agree)."""

    commands: int = 0
    undecodable: int = 0
    duplicates: int = 0  # republished commands, skipped as the runner skips them
    twin_events: int = 0
    live_events: int = 0
    missing: list[str] = field(default_factory=list)  # twin event ids not committed
    extra: list[str] = field(default_factory=list)  # committed event ids the twin did not make
    duplicated: list[str] = field(default_factory=list)  # event ids committed more than once
    differing: list[str] = field(default_factory=list)  # same id, other bytes
    misordered: list[str] = field(default_factory=list)  # "key@p<partition>" whose order differs
    snapshots: dict[int, int] = field(default_factory=dict)  # command partition -> seq compared
    ends: dict[int, int] = field(default_factory=dict)  # command partition -> its last offset
    snapshot_missing: list[int] = field(default_factory=list)
    snapshot_mismatch: list[str] = field(default_factory=list)  # "p<partition>@<seq>"

    @property
    def events_ok(self) -> bool:
        return not (self.missing or self.extra or self.duplicated or self.differing or self.misordered)

    @property
    def state_ok(self) -> bool:
        return not (self.snapshot_missing or self.snapshot_mismatch)

    def events_detail(self) -> str:
        head = (
            f"{self.commands} commands ({self.undecodable} undecodable, {self.duplicates} republished), "
            f"twin {self.twin_events} events, "
        )
        head += f"committed {self.live_events}"
        parts = [
            f"{name} {len(ids)}: {ids[:3]}"
            for name, ids in (
                ("missing", self.missing),
                ("extra", self.extra),
                ("duplicated", self.duplicated),
                ("differing", self.differing),
                ("misordered", self.misordered),
            )
            if ids
        ]
        return "; ".join([head, *parts])

    def state_detail(self) -> str:
        parts = [
            f"compared at {dict(sorted(self.snapshots.items()))} of last offsets {dict(sorted(self.ends.items()))}"
        ]
        if self.snapshot_missing:
            parts.append(f"no snapshot for partitions {self.snapshot_missing}")
        if self.snapshot_mismatch:
            parts.append(f"state hash differs at {self.snapshot_mismatch}")
        return "; ".join(parts)


def _snapshot_compare(
    result: TwinComparison, partition: int, engine: Engine, snap: SnapshotRecord, incarnation: str
) -> None:
    """The twin, having applied every command up to ``snap.seq``, against the live engine's snapshot."""
    result.snapshots[partition] = snap.seq
    if (
        engine.last_seq != snap.seq
        or engine.state_hash() != snap.state_hash
        or snap.incarnation != incarnation
    ):
        result.snapshot_mismatch.append(f"p{partition}@{snap.seq}")


def engine_twin_compare(*, topics: EngineTopics | None = None, timeout: float = 300.0) -> TwinComparison:
    """Replay ``topics.commands`` into an uncrashed twin and compare it with ``topics.events``/``snapshots``."""
    topics = topics or EngineTopics()
    result = TwinComparison()
    by_partition: dict[int, list[tuple[int, str, bytes | None]]] = defaultdict(list)
    for record in kafka.topic_read_to_end(topics.commands, timeout=timeout, group_prefix="engine-twin"):
        key = (record.key or b"").decode("utf-8", "replace")
        by_partition[record.partition].append((record.offset, key, record.value))

    incarnation = kafka.topic_id(topics.commands)
    twin_bytes: dict[str, bytes] = {}
    twin_source: dict[str, int] = {}  # event id -> command partition
    twin_order: dict[tuple[str, int], list[str]] = defaultdict(list)
    for partition in sorted(by_partition):
        commands = sorted(by_partition[partition], key=lambda c: c[0])
        result.ends[partition] = commands[-1][0]
        snap = snapshot_load(topic=topics.snapshots, partition=partition, timeout=timeout)
        if snap is None:
            result.snapshot_missing.append(partition)
        # As the runner starts a partition with no snapshot, but always the specification (engine.Engine): the
        # live engine is usually the native one, so equal output also shows the two implementations agree.
        engine = Engine()
        window = CommandWindow()  # and skips a republished command as it does
        compared = snap is None
        for offset, key, value in commands:
            if snap is not None and not compared and offset > snap.seq:
                _snapshot_compare(result, partition, engine, snap, incarnation)
                compared = True
            result.commands += 1
            if window.repeats(offset, command_event_id(value)):
                result.duplicates += 1
                continue
            try:
                envelope, command = command_decode_fast(value)
            except UndecodableCommand:
                result.undecodable += 1
                continue
            produced = engine.apply(offset, command)
            for record_key, value_out, _market in command_records(
                produced, origin=Origin(incarnation, partition), command=envelope, key=key
            ):
                event_id = _event_id_decoder.decode(value_out).event_id
                twin_bytes[event_id] = value_out
                twin_source[event_id] = partition
                twin_order[(record_key, partition)].append(event_id)
        if snap is not None and not compared:
            _snapshot_compare(result, partition, engine, snap, incarnation)
    result.twin_events = len(twin_bytes)

    seen: Counter[str] = Counter()
    live_order: dict[tuple[str, int], list[tuple[int, int, str]]] = defaultdict(list)
    for record in kafka.topic_read_to_end(topics.events, timeout=timeout, group_prefix="engine-twin"):
        result.live_events += 1
        value = record.value or b""
        try:
            event_id = _event_id_decoder.decode(value).event_id
        except (msgspec.DecodeError, msgspec.ValidationError):
            result.extra.append(f"<undecodable p{record.partition}@{record.offset}>")
            continue
        seen[event_id] += 1
        if seen[event_id] > 1:
            result.duplicated.append(event_id)
            continue
        expected = twin_bytes.get(event_id)
        if expected is None:
            result.extra.append(event_id)
            continue
        if value != expected:
            result.differing.append(event_id)
        key = (record.key or b"").decode("utf-8", "replace")
        live_order[(key, twin_source[event_id])].append((record.partition, record.offset, event_id))
    result.missing = [event_id for event_id in twin_bytes if event_id not in seen]
    for (key, partition), ids in twin_order.items():
        live = [event_id for _p, _o, event_id in sorted(live_order.get((key, partition), []))]
        present = [event_id for event_id in ids if event_id in seen]
        if live != present:
            result.misordered.append(f"{key}@p{partition}")
    return result
