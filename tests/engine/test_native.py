"""The mypyc build of the engine (scripts/build_engine_native.py) is byte-identical to the pure-Python one.

The same seeded command stream (every command kind, order type, class and tif, two symbols, a restore
mid-stream) must give the same events and the same snapshot bytes in this process (compiled when the
extensions exist) and in a subprocess that imports the ``.py`` sources only; both must also equal the digest
recorded from the pure engine before the native build existed. Without the extensions the comparison is
pure against pure and still pins the recorded digest.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec

import engine.book
from engine.commands import (
    CancelOrder,
    Command,
    Halt,
    NewOrder,
    ReplaceOrder,
    Resume,
    SessionClose,
    SessionOpen,
    SetReferencePrice,
    SplitApply,
    StopLoss,
    TakeProfit,
)
from engine.engine import Engine
from engine.state import BookState, EngineState, EngineStateEpochs, EngineStateSplits, OrderState

ROOT = Path(__file__).resolve().parents[2]
# Recorded from the pure-Python engine at 8524131 (before engine.state / the native build): the snapshot
# format and every event must never change because of how the engine is built. The events digest changed
# once on purpose: OrderTriggered gained ``water_e4`` (issue 3); with that field dropped from its 226
# OrderTriggered events the stream still hashes to 6be7c6e4... (checked when the field was added).
RECORDED = {
    "events": "2c605057d93d7bb0261fac34bc3c7de134bd72e80d119662beabb4841a8a487d",
    "state": "41c00154def49fd62f7425540b0f964609deebd6cb0fb55ae1ce305f1383b601",
}
# The same stream with a SplitApply every 150 commands (forward, reverse, redelivered ids), pure engine.
# Unchanged by split epochs: its commands carry none, and an engine without epochs snapshots version 2.
RECORDED_SPLITS = {
    "events": "a7a39faaf2b08f2e11d7b68f9536fe12d8885a4efd11e5b60fb3213b0616eb4c",
    "state": "23fbe1449fd4ae63a21ca3be74c143d35f279a49ee7166004be8702ac3a0080d",
}
# That stream with split epochs (every order command stamped with its symbol's epoch, some stale or ahead),
# pure engine at the commit that introduced them (snapshot version 3).
RECORDED_EPOCHS = {
    "events": "606729eb4a6008983b7ef403833f9b9fcc62c25a525e907d1eb88af19d0cf3de",
    "state": "0e3e7db77839cf0cf4a3de41aca52a38d7798a033b995fe9636b9af0a3e97960",
}

# Run in a fresh interpreter: engine.* resolve to their .py files even where an extension sits beside them.
_PURE_PRELUDE = """
import importlib.machinery, importlib.util, sys
from pathlib import Path
from typing import Any

class _SourceOnly:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "engine" and not name.startswith("engine."):
            return None
        rel = Path(*name.split("."))
        base = Path(sys.argv[1])
        pkg = base / rel / "__init__.py"
        if pkg.exists():
            return importlib.util.spec_from_file_location(name, pkg, submodule_search_locations=[str(pkg.parent)])
        return importlib.util.spec_from_file_location(name, base / rel.with_suffix(".py"))

sys.meta_path.insert(0, _SourceOnly)
sys.path.insert(0, sys.argv[1])
import json
import engine.book
from tests.engine.test_native import digest
assert engine.book.__file__.endswith(".py"), engine.book.__file__
print(json.dumps([digest(), digest(splits=True), digest(splits=True, epochs=True)]))
"""


_SPLIT_TERMS = ((2, 1), (1, 3), (3, 2), (2, 5), (4, 1))


def _with_splits(cmds: list[Command]) -> list[Command]:
    """Insert a split of one symbol every 150 commands; every third one re-sends an earlier split id."""
    out: list[Command] = []
    for i, cmd in enumerate(cmds):
        out.append(cmd)
        if i and i % 150 == 0:
            k = i // 150
            num, den = _SPLIT_TERMS[k % len(_SPLIT_TERMS)]
            sid = f"ca:{k - 1 if k % 3 == 0 else k}"
            out.append(SplitApply(("ACME", "BETA")[k % 2], sid, num, den, 100))
    return out


def _with_epochs(cmds: list[Command]) -> list[Command]:
    """Stamp split epochs as the order service would: each split its symbol's next epoch (a re-sent id its
    first one), each order command its symbol's current epoch, except every 25th (stale: one before) and
    every 97th (ahead: one after)."""
    epoch: dict[str, int] = {}
    seen: dict[str, int] = {}
    symbol_of: dict[str, str] = {}
    out: list[Command] = []
    n = 0
    for cmd in cmds:
        if isinstance(cmd, SplitApply):
            if cmd.split_id not in seen:
                epoch[cmd.symbol] = seen[cmd.split_id] = epoch.get(cmd.symbol, 0) + 1
            out.append(msgspec.structs.replace(cmd, split_epoch=seen[cmd.split_id]))
            continue
        if isinstance(cmd, NewOrder | ReplaceOrder):
            if isinstance(cmd, NewOrder):
                sym = symbol_of[cmd.order_id] = cmd.symbol
            else:
                sym = symbol_of[cmd.new_order_id] = symbol_of.get(cmd.order_id, "ACME")
            n += 1
            e = epoch.get(sym, 0)
            if n % 25 == 0 and e:
                e -= 1
            elif n % 97 == 0:
                e += 1
            cmd = msgspec.structs.replace(cmd, split_epoch=e)
        out.append(cmd)
    return out


def stream(seed: int = 7, n: int = 3000) -> list[Command]:
    rng = random.Random(seed)
    syms = ("ACME", "BETA")
    live: list[str] = []
    out: list[Command] = [SetReferencePrice(symbol=s, price_e4=1_000_000) for s in syms]
    out.append(SessionOpen())
    for i in range(n):
        r = rng.random()
        sym = rng.choice(syms)
        side: Any = rng.choice(("buy", "sell"))  # Literal fields: chosen at random
        px = 1_000_000 + rng.randint(-20, 20) * 500
        qty = rng.randint(1, 50) * 100_000_000
        acct = f"a{rng.randint(0, 6)}"
        oid = f"o{i}"
        if r < 0.40:
            tif: Any = rng.choice(("day", "day", "gtc", "ioc", "fok", "opg", "cls"))
            out.append(NewOrder(oid, acct, sym, side, "limit", tif, qty_e9=qty, limit_price_e4=px))
            live.append(oid)
        elif r < 0.48:
            if rng.random() < 0.3:
                out.append(
                    NewOrder(oid, acct, sym, side, "market", "day", notional_e4=px * rng.randint(1, 9))
                )
            else:
                out.append(NewOrder(oid, acct, sym, side, "market", rng.choice(("day", "ioc")), qty_e9=qty))
        elif r < 0.56:
            otype: Any = rng.choice(("stop", "stop_limit", "trailing_stop"))
            kw: dict[str, Any] = {}
            if otype == "trailing_stop":
                kw = {"trail_price_e4": 2000} if rng.random() < 0.5 else {"trail_percent_bps": 150}
            else:
                kw["stop_price_e4"] = px
                if otype == "stop_limit":
                    kw["limit_price_e4"] = px
            out.append(NewOrder(oid, acct, sym, side, otype, "gtc", qty_e9=qty, **kw))
            live.append(oid)
        elif r < 0.62:
            cls: Any = rng.choice(("bracket", "oto", "oco"))
            exit_up = side == "buy" if cls != "oco" else side == "sell"
            tp = TakeProfit(limit_price_e4=px + (8000 if exit_up else -8000))
            sl = StopLoss(stop_price_e4=px - (8000 if exit_up else -8000))
            legs: dict[str, Any] = (
                {"take_profit": tp, "stop_loss": sl} if cls != "oto" else {"take_profit": tp}
            )
            out.append(
                NewOrder(
                    oid,
                    acct,
                    sym,
                    side,
                    "limit",
                    "gtc",
                    qty_e9=qty,
                    limit_price_e4=px,
                    order_class=cls,
                    **legs,
                )
            )
            live.append(oid)
        elif r < 0.80 and live:
            out.append(CancelOrder(order_id=live.pop(rng.randrange(len(live)))))
        elif r < 0.93 and live:
            old = live.pop(rng.randrange(len(live)))
            out.append(ReplaceOrder(old, f"r{i}", qty_e9=rng.choice((None, qty)), limit_price_e4=px))
            live.append(f"r{i}")
        elif r < 0.96:
            out.append(Halt(symbol=sym) if rng.random() < 0.2 else Resume(symbol=sym))
        elif r < 0.98:
            out.append(SetReferencePrice(symbol=sym, price_e4=px))
        else:
            out.append(SessionClose() if rng.random() < 0.3 else SessionOpen())
    return out


def digest(splits: bool = False, epochs: bool = False) -> dict[str, str]:
    """sha256 of every event (msgpack) and of the final snapshot; restores from a snapshot mid-stream."""
    cmds = _with_splits(stream()) if splits else stream()
    if epochs:
        cmds = _with_epochs(cmds)
    events = hashlib.sha256()
    eng = Engine()
    for seq, cmd in enumerate(cmds, start=1):
        events.update(msgspec.msgpack.encode(eng.apply(seq, cmd)))
        if seq == len(cmds) // 2:
            eng = Engine.restore(eng.snapshot())
    return {"events": events.hexdigest(), "state": eng.state_hash()}


def test_snapshot_structs_keep_their_wire_config() -> None:
    # mypyc would drop these class keywords; engine.state is never compiled.
    assert OrderState.__struct_config__.array_like is True
    assert OrderState.__struct_config__.gc is False
    assert EngineState.__struct_config__.array_like is True
    assert BookState.__struct_config__.array_like is True
    assert EngineStateSplits.__struct_config__.array_like is True
    assert EngineStateEpochs.__struct_config__.array_like is True


def test_loaded_build_matches_recorded_digest() -> None:
    assert digest() == RECORDED, f"engine.book from {engine.book.__file__}"
    assert digest(splits=True) == RECORDED_SPLITS, f"engine.book from {engine.book.__file__}"
    assert digest(splits=True, epochs=True) == RECORDED_EPOCHS, f"engine.book from {engine.book.__file__}"


def test_pure_sources_match_recorded_digest_in_subprocess() -> None:
    res = subprocess.run(
        [sys.executable, "-c", _PURE_PRELUDE, str(ROOT)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert json.loads(res.stdout) == [RECORDED, RECORDED_SPLITS, RECORDED_EPOCHS]
