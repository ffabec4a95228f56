"""Django-free, deterministic matching engine core (see docs/engine.md).

Public API: ``Engine`` (``apply``, ``snapshot``, ``restore``, ``state_hash``), the command Structs in
``engine.commands``, the event Structs in ``engine.events`` and the exact unit converters in ``engine.units``.
"""

from engine.commands import (
    CancelOrder,
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

__all__ = [
    "CancelOrder",
    "Engine",
    "Halt",
    "NewOrder",
    "ReplaceOrder",
    "Resume",
    "SessionClose",
    "SessionOpen",
    "SetReferencePrice",
    "SplitApply",
    "StopLoss",
    "TakeProfit",
]
