"""``CommandWindow``: a republished command is recognised by the partition's content alone, so a window rebuilt
from the previous ``size`` offsets (the runner at recovery, the twin) decides exactly as the one kept running."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from apps.orders.engine_runner import CommandWindow, command_event_id


def _raw(n: int) -> bytes:
    return b'{"event_id": "%s", "other": 1}' % str(uuid.UUID(int=n + 1)).encode()


@given(
    ids=st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=80),
    size=st.integers(min_value=1, max_value=10),
    restart=st.integers(min_value=0, max_value=80),
)
def test_a_rebuilt_window_decides_as_the_running_one(ids: list[int], size: int, restart: int) -> None:
    records = [_raw(i) for i in ids]
    running = CommandWindow(size)
    expected = [running.repeats(offset, command_event_id(raw)) for offset, raw in enumerate(records)]
    restart = min(restart, len(records))
    rebuilt = CommandWindow(size)
    for offset in range(max(restart - size, 0), restart):  # what the runner reads back before its start
        rebuilt.repeats(offset, command_event_id(records[offset]))
    assert [
        rebuilt.repeats(o, command_event_id(records[o])) for o in range(restart, len(records))
    ] == expected[restart:]
    # The rule itself: a repeat of an event id seen within the previous ``size`` offsets.
    assert expected == [
        any(ids[j] == ids[o] for j in range(max(o - size, 0), o)) for o in range(len(records))
    ]


def test_an_unreadable_record_is_never_a_repeat() -> None:
    window = CommandWindow(5)
    assert not window.repeats(0, command_event_id(b"not json"))
    assert not window.repeats(1, command_event_id(None))
    assert not window.repeats(2, command_event_id(_raw(1)))
    assert window.repeats(3, command_event_id(_raw(1)))
