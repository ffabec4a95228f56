"""`manage.py check --deploy` under production settings is clean when the required environment is set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "FIELD_", "ACCOUNTS_"))}
        | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_has_no_warnings_under_production_settings() -> None:
    result = _check(
        {
            "DJANGO_SETTINGS_MODULE": "brokerage.settings.production",
            "DJANGO_SECRET_KEY": "k" * 20 + "-Zq8!vW3#pL9@xR2$mN7^bT5&hJ1*cF6(gD4)",
            "DJANGO_ALLOWED_HOSTS": "api.example.com",
            "DATABASE_URL": "postgres://app:secret@db.internal:5432/brokerage",
            "FIELD_ENCRYPTION_KEYS": "bm90LWEtcmVhbC1rZXktYnV0LTMyLWJ5dGVzLWxvbmc=",
            "ACCOUNTS_API_KEY_PEPPER": "pepper-from-the-secrets-manager",
        }
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_settings_refuse_to_start_without_secrets() -> None:
    result = _check({"DJANGO_SETTINGS_MODULE": "brokerage.settings.production"})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr
