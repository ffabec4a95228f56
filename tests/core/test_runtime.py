"""``apps.core.runtime.heap_freeze`` and the long-running processes that call it before their loop."""

from __future__ import annotations

import gc
import signal
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command

from apps.core.runtime import heap_freeze


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Whatever a test freezes goes back to the collector afterwards (this process runs the whole suite), and
    the signal handlers a process loop installs are put back."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_heap_freeze_collects_garbage_first_then_keeps_live_objects_out_of_collections(
    unfrozen: None,
) -> None:
    garbage = _Node()
    dead = weakref.ref(garbage)
    del garbage
    live: list[list[int]] = [[]]  # a tracked container alive across the freeze

    heap_freeze()

    assert dead() is None, "garbage alive at the call must be collected, not frozen"
    assert gc.get_freeze_count() > 0
    assert not any(obj is live for obj in gc.get_objects()), (
        "a live object must sit in the permanent generation"
    )
    made_after: list[list[int]] = [[]]
    assert any(obj is made_after for obj in gc.get_objects()), "later objects are collected as usual"


@pytest.mark.django_db(transaction=True)
def test_outbox_relay_command_freezes_its_heap_before_its_loop(unfrozen: None, capsys: Any) -> None:
    call_command("run_outbox_relay", "--max-batches", "1")

    assert gc.get_freeze_count() > 0
    assert "relay stopped after publishing" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_consumer_command_freezes_its_heap_before_its_loop(unfrozen: None, capsys: Any) -> None:
    call_command("run_consumer", "kyc.transfers", "--max-messages", "0", "--idle-timeout", "0.1")

    assert gc.get_freeze_count() > 0
    assert "consumer kyc.transfers stopped" in capsys.readouterr().out
