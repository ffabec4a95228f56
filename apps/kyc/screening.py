"""The process-wide sanctions screener: the configured SDN list version, loaded once per process.

``SANCTIONS_LIST_DIR`` (default ``shared_data_dir()/"ofac"/"2022-01-31"``) names the version. Screeners are cached
per (directory, threshold); a re-screen against another directory builds (and caches) that one too. The screener
is immutable, so sharing it between threads and requests is safe.
"""

from __future__ import annotations

import functools
from dataclasses import asdict
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.core.datafiles import shared_data_dir
from apps.kyc.sanctions import SanctionsScreener, ScreeningResult, load_sdn_list

DEFAULT_LIST_VERSION = "2022-01-31"


def configured_list_dir() -> Path:
    configured = getattr(settings, "SANCTIONS_LIST_DIR", None)
    return Path(configured) if configured else shared_data_dir() / "ofac" / DEFAULT_LIST_VERSION


@functools.lru_cache(maxsize=4)
def _screener(directory: str, threshold: int) -> SanctionsScreener:
    return SanctionsScreener(load_sdn_list(Path(directory)), review_threshold=threshold)


def screener_for(list_dir: Path | None = None) -> SanctionsScreener:
    directory = (list_dir or configured_list_dir()).resolve()
    return _screener(str(directory), int(settings.SANCTIONS_REVIEW_THRESHOLD))


def candidates_evidence(result: ScreeningResult) -> list[dict[str, Any]]:
    """The best candidates as stored evidence (JSON-ready)."""
    rows = []
    for candidate in result.best_candidates:
        row = asdict(candidate)
        row["programs"] = list(candidate.programs)
        rows.append(row)
    return rows
