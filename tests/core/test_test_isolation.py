"""make test runs two pytest-xdist workers: each has its own Redis DBs and Channels prefix (brokerage/settings/test.py),
and the processes a test starts inherit them without shifting again."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.procs import ROOT

# Prints what the test settings resolve to, then what a child process started with this environment resolves to.
_PROBE = """
import json, os, subprocess, sys
import django
django.setup()
from django.conf import settings
mine = [settings.REDIS_URL, settings.CELERY_BROKER_URL, settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]]
if sys.argv[1] == "parent":
    child = subprocess.run([sys.executable, "-c", sys.argv[2], "child", ""], capture_output=True, text=True, check=True)
    print(json.dumps([mine, json.loads(child.stdout)]))
else:
    print(json.dumps(mine))
"""


# What the isolation writes into a worker's environment (this test may itself run in a worker).
_ISOLATION = ("PYTEST_XDIST_WORKER", "TEST_WORKER_ISOLATED", "CHANNEL_LAYER_PREFIX")


def _resolve(**env: str) -> list[list[str]]:
    base = {k: v for k, v in os.environ.items() if k not in _ISOLATION}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, "parent", _PROBE],
        env={
            **base,
            "DJANGO_SETTINGS_MODULE": "brokerage.settings.test",
            "REDIS_URL": "redis://127.0.0.1:6399/9",
            "CELERY_BROKER_URL": "redis://127.0.0.1:6399/10",
            **env,
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_each_worker_has_its_own_redis_dbs_and_channel_prefix_and_its_children_inherit_them() -> None:
    first = ["redis://127.0.0.1:6399/9", "redis://127.0.0.1:6399/10", "asgi-gw0"]
    second = ["redis://127.0.0.1:6399/11", "redis://127.0.0.1:6399/12", "asgi-gw1"]
    assert _resolve(PYTEST_XDIST_WORKER="gw0") == [first, first]
    assert _resolve(PYTEST_XDIST_WORKER="gw1") == [second, second]  # the child does not shift again
    serial = ["redis://127.0.0.1:6399/9", "redis://127.0.0.1:6399/10", "asgi"]
    assert _resolve() == [serial, serial]
