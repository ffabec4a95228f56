"""The engine's msgspec Structs for mutable order state and the snapshot: never compiled by mypyc.

Invariants:
- This module stays interpreted even when ``engine.book``/``engine.engine`` are compiled
  (``scripts/build_engine_native.py``): mypyc drops class keywords such as ``array_like=True`` from a
  ``msgspec.Struct`` subclass it compiles, which would change the snapshot bytes and so the state hash.
  ``tests/engine/test_native.py`` pins the Struct configs and the snapshot bytes across both builds.
- ``Order`` is the engine's mutable order (``limit``/``stop`` = 0 means "none"; ``notional_left`` is in
  1e-13 USD); ``EngineState``/``BookState`` are the canonical snapshot layout (``SNAPSHOT_VERSION`` in
  ``engine.engine``). Field order is part of the snapshot format.
- An engine that never applied a split encodes ``EngineState`` (version 1, the bytes of before splits
  existed); one that did encodes ``EngineStateSplits`` (version 2: the same fields plus the applied split ids,
  a trailing field since array-like Structs never omit defaults). One that knows a symbol's split epoch
  (a ``SplitApply`` carried ``split_epoch``) encodes ``EngineStateEpochs`` (version 3: plus ``epochs``, the
  ``(symbol, epoch)`` pairs sorted by symbol). Restore decodes every version as ``EngineStateEpochs`` (a
  shorter array gets the missing trailing fields' defaults: ``splits=[]``, ``epochs=[]``).
"""

from __future__ import annotations

import msgspec


class OrderState(msgspec.Struct, array_like=True, gc=False):
    """Mutable engine-side order. ``limit``/``stop`` = 0 means "none"; ``notional_left`` is in 1e-13 USD."""

    order_id: str
    account_id: str
    symbol: str
    is_buy: bool
    otype: str
    tif: str
    qty: int
    notional: int
    notional_left: int
    limit: int
    stop: int
    trail_price: int
    trail_bps: int
    water: int
    leaves: int
    cum: int
    arrival: int
    state: int
    oco: str = ""
    parent: str = ""
    children: tuple[str, ...] = ()
    extended_hours: bool = False


class BookState(msgspec.Struct, array_like=True):
    symbol: str
    book_seq: int
    arrival: int
    last_price: int
    ref_price: int
    halted: bool
    bids: list[tuple[int, list[str]]]
    asks: list[tuple[int, list[str]]]
    trailing: list[str]
    opg: list[str]
    cls: list[str]


class EngineState(msgspec.Struct, array_like=True):
    version: int
    last_seq: int
    phase: str
    orders: list[OrderState]
    books: list[BookState]


class EngineStateSplits(EngineState, array_like=True):
    """``EngineState`` plus the split ids applied so far (in application order)."""

    splits: list[str] = []


class EngineStateEpochs(EngineStateSplits, array_like=True):
    """``EngineStateSplits`` plus each symbol's split epoch, ``(symbol, epoch)`` sorted by symbol."""

    epochs: list[tuple[str, int]] = []
