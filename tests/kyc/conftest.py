"""Fixtures of the kyc tests: per-test cache (brute-force counters), documents in a temporary media root,
a fixed market clock (the CIP age check uses the market date), and an API client."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from apps.core.markettime import FixedClock
from apps.core.markettime_config import market_clock_override

NOW = datetime(2024, 6, 3, 15, 0, tzinfo=UTC)  # a Monday; 11:00 in New York


@pytest.fixture(autouse=True)
def _isolation(settings: Any, tmp_path: Path) -> Iterator[None]:
    cache.clear()
    settings.MEDIA_ROOT = str(tmp_path / "media")
    market_clock_override(FixedClock(NOW))
    yield
    market_clock_override(None)
    cache.clear()


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def aml_thresholds() -> None:
    """The seeded AML thresholds, for transactional tests (their flush removes migration data)."""
    from django.apps import apps as global_apps

    importlib.import_module("apps.kyc.migrations.0002_seed_aml_thresholds").seed(global_apps, None)
