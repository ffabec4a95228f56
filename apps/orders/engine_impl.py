"""Which matching-engine implementation the engine process runs (docs/engine.md, ADR 0009).

- ``native``: ``engine_native.Engine``, the Rust (PyO3) engine built from ``engine_native/`` by ``make venv``
  (``scripts/build_engine_native.py``) and by the Docker image's build stage. The default.
- ``python``: ``engine.Engine``, the Python engine (compiled with mypyc when its extensions are built): the
  executable specification the native one is tested against.

Invariants:
- Both give the same events, in the same order, and the same snapshot bytes for every command stream
  (``tests/engine/test_native_rust.py``), so a snapshot written by one restores into the other: switching
  implementation is a restart and nothing else. The engine twin (``apps.orders.engine_twin``) always replays with
  the specification, so every twin comparison of a native engine's output also checks the two agree.
- ``native`` never falls back silently: an engine process whose extension is missing stops at start with
  ``ImproperlyConfigured`` (a platform that quietly ran the slower engine would pass every check but the bench).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, TypeAlias

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from engine.engine import Engine

if TYPE_CHECKING:
    import engine_native

IMPLEMENTATIONS: Final = ("native", "python")

# The two engines share one interface (``engine_native.pyi`` mirrors ``engine.engine.Engine``).
AnyEngine: TypeAlias = "Engine | engine_native.Engine"
EngineClass: TypeAlias = "type[Engine] | type[engine_native.Engine]"


def engine_class(name: str | None = None) -> EngineClass:
    """The engine class called ``name`` (default: the ``ENGINE_IMPLEMENTATION`` setting)."""
    name = name or settings.ENGINE_IMPLEMENTATION
    if name == "python":
        return Engine
    if name == "native":
        try:
            import engine_native  # only the native engine's processes need it
        except ImportError as exc:
            raise ImproperlyConfigured(
                "ENGINE_IMPLEMENTATION=native but the engine_native extension is not installed "
                "(`make venv` builds it; it needs cargo)"
            ) from exc
        return engine_native.Engine
    raise ImproperlyConfigured(f"ENGINE_IMPLEMENTATION must be one of {IMPLEMENTATIONS}, not {name!r}")
