"""``deploy/healthcheck.py`` loaded as a module (it is a script the container runs, not part of a package), the
same way the chaos supervisor loads it."""

from __future__ import annotations

import runpy
from pathlib import Path
from types import SimpleNamespace

healthcheck = SimpleNamespace(
    **runpy.run_path(str(Path(__file__).resolve().parents[2] / "deploy" / "healthcheck.py"))
)
