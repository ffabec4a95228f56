"""Where the project's real reference data lives (OFAC lists, OHLCV history, Alpaca's spec).

``SHARED_DATA_DIR`` overrides; the default is the ``shared/data`` folder beside the repository, which is where a
checkout, CI and the container image (copied in at build time) all find it. Pure Python: no Django import.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    configured = os.environ.get("SHARED_DATA_DIR")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"
    if not path.is_dir():
        raise FileNotFoundError(
            f"reference data folder {path} not found; set SHARED_DATA_DIR to the folder holding ofac/ and ohlcv/"
        )
    return path
