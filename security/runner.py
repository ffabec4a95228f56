"""The stages of ``make security``. Each stage yields ``Check(name, ok, detail)``; totals are printed at the end.

Environment: the platform venv (``.venv``) runs Django and pytest; the tooling venv ``.run/security-venv``
(requirements/security.txt) runs schemathesis, bandit and pip-audit. The live server is daphne on a free
loopback port against a database this run migrates and seeds itself (``SECURITY_DATABASE``, default
``brokerage_security``), with its own Redis DBs (``SECURITY_REDIS_DB``, default 5, flushed before the live
stage; ``SECURITY_CELERY_DB``, default 4).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = ROOT / ".venv" / "bin" / "python"
SEC_VENV = ROOT / ".run" / "security-venv"
REQS = ROOT / "requirements" / "security.txt"
LOGS = ROOT / ".run" / "security-logs"
PG = os.environ.get("SECURITY_PG", "postgres://brokerage:brokerage@127.0.0.1:55432")
DB_NAME = os.environ.get("SECURITY_DATABASE", "brokerage_security")
REDIS = os.environ.get("SECURITY_REDIS", "redis://127.0.0.1:56379")
REDIS_DB = int(os.environ.get("SECURITY_REDIS_DB", "5"))
CELERY_DB = int(os.environ.get("SECURITY_CELERY_DB", "4"))
MAX_EXAMPLES = os.environ.get("SECURITY_MAX_EXAMPLES", "25")

# Existing security-relevant tests of other apps that the battery runs too (reused, not duplicated).
# (tests/marketdata/test_stream.py needs its own Redis DB 15: its origin checks are repeated in tests/security.)
REUSED_TESTS = [
    "tests/accounts/test_bruteforce.py",
    "tests/accounts/test_otp.py",
    "tests/accounts/test_object_access.py",
    "tests/accounts/test_api_keys.py",
    "tests/orders/test_order_api.py",
]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


def _env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": f"{PG}/{DB_NAME}",
        "REDIS_URL": f"{REDIS}/{REDIS_DB}",
        "CELERY_BROKER_URL": f"{REDIS}/{CELERY_DB}",
        "DJANGO_SETTINGS_MODULE": "brokerage.settings.test",
    }
    env.update(extra)
    return env


def _run(
    cmd: list[str], env: dict[str, str] | None = None, log: str | None = None, stdout_only: bool = False
) -> tuple[int, str]:
    proc = subprocess.run(cmd, cwd=ROOT, env=env or _env(), capture_output=True, text=True, check=False)  # noqa: S603
    out = proc.stdout if stdout_only else proc.stdout + proc.stderr
    if log:
        LOGS.mkdir(parents=True, exist_ok=True)
        (LOGS / log).write_text(out)
    return proc.returncode, out


def tooling_venv() -> Iterator[Check]:
    stamp = SEC_VENV / f".installed-{hashlib.sha256(REQS.read_bytes()).hexdigest()[:16]}"
    if not stamp.exists():
        code, out = _run(
            [str(ROOT / "scripts" / "pyinstall.sh"), str(SEC_VENV), "-r", str(REQS)], log="venv.log"
        )
        if code != 0:
            yield Check("tooling venv", False, out[-500:])
            return
        stamp.touch()
    yield Check("tooling venv", True)


def allowlists() -> Iterator[Check]:
    from security.allowlists import allowlist_check

    problems = allowlist_check()
    yield Check("allow-lists carry reasons", not problems, "; ".join(problems))


def check_deploy() -> Iterator[Check]:
    from security.allowlists import CHECK_DEPLOY

    env = _env(
        DJANGO_SETTINGS_MODULE="brokerage.settings.production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="api.example.com",
        FIELD_ENCRYPTION_KEYS=secrets.token_urlsafe(32),
        ACCOUNTS_API_KEY_PEPPER=secrets.token_urlsafe(32),
    )
    code, out = _run(
        [str(PY), "manage.py", "check", "--deploy", "--fail-level", "WARNING"], env, "check_deploy.log"
    )
    ids = set(re.findall(r"\(([a-z_]+\.[WE]\d+)\)", out))
    unreviewed = sorted(ids - set(CHECK_DEPLOY))
    ok = not unreviewed and (code == 0 or bool(ids))
    yield Check(
        "manage.py check --deploy (production settings)", ok, ", ".join(unreviewed) or out.strip()[-300:]
    )


def bandit() -> Iterator[Check]:
    from security.allowlists import BANDIT

    cmd = [
        str(SEC_VENV / "bin" / "bandit"),
        "-q",
        "-r",
        "apps",
        "brokerage",
        "engine",
        "-f",
        "json",
        "-x",
        "*/migrations/*",
    ]
    _, out = _run(cmd, log="bandit.json", stdout_only=True)
    try:
        results = json.loads(out[out.index("{") :])["results"]
    except (ValueError, KeyError):
        yield Check("bandit", False, out[-300:])
        return
    open_findings = [
        f"{r['test_id']} {r['filename']}:{r['line_number']}"
        for r in results
        if r["test_id"] not in BANDIT and f"{r['test_id']}:{r['filename']}" not in BANDIT
    ]
    yield Check(f"bandit ({len(results)} findings, {len(open_findings)} unreviewed)", not open_findings,
                "; ".join(open_findings[:20]))  # fmt: skip


def pip_audit() -> Iterator[Check]:
    from security.allowlists import PIP_AUDIT

    cmd = [str(SEC_VENV / "bin" / "pip-audit"), "-r", "requirements/constraints.txt", "--no-deps",
           "--disable-pip", "-f", "json", "--progress-spinner", "off"]  # fmt: skip
    _, out = _run(cmd, log="pip_audit.json", stdout_only=True)
    try:
        deps = json.loads(out[out.index("{") :])["dependencies"]
    except (ValueError, KeyError):
        yield Check("pip-audit", False, out[-300:])
        return
    vulns = [
        f"{d['name']}=={d['version']} {v['id']}"
        for d in deps
        for v in d.get("vulns", [])
        if v["id"] not in PIP_AUDIT and not set(v.get("aliases", [])) & set(PIP_AUDIT)
    ]
    yield Check(f"pip-audit ({len(deps)} pinned packages)", not vulns, "; ".join(vulns))


def ruff_security() -> Iterator[Check]:
    # The project's own ruff config (pyproject: S selected, reviewed ignores), findings filtered to S rules.
    ruff = str(ROOT / ".venv" / "bin" / "ruff")
    _, out = _run(
        [ruff, "check", ".", "--output-format", "json", "--exit-zero"], log="ruff.json", stdout_only=True
    )
    findings = [f"{f['code']} {f['filename']}:{f['location']['row']}" for f in json.loads(out or "[]")
                if str(f.get("code") or "").startswith("S")]  # fmt: skip
    yield Check(f"ruff security rules (S): {len(findings)} findings", not findings, "; ".join(findings[:20]))


def pytest_stage() -> Iterator[Check]:
    cmd = [
        str(ROOT / ".venv" / "bin" / "pytest"),
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/security",
        *REUSED_TESTS,
    ]
    code, out = _run(cmd, log="pytest.log")
    summary = out.strip().splitlines()[-1] if out.strip() else ""
    passed = int(m.group(1)) if (m := re.search(r"(\d+) passed", summary)) else 0
    failed = sum(int(n) for n in re.findall(r"(\d+) (?:failed|error)", summary))
    yield Check(
        f"pytest security suite ({passed} passed, {failed} failed)", code == 0 and passed > 0, summary
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback
                return True
        except OSError:
            time.sleep(0.5)
    return False


def live() -> Iterator[Check]:
    """Migrate + seed the database, start daphne, run schemathesis (each user) and the conformance run."""
    import psycopg

    with psycopg.connect(f"{PG}/brokerage", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone():
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    env = _env(DJANGO_SETTINGS_MODULE="security.live_settings", DJANGO_DEBUG="false",
               MARKET_CALENDAR="always_open", KAFKA_TOPIC_PREFIX="security.")  # fmt: skip
    code, out = _run([str(PY), "manage.py", "migrate", "--noinput"], env, "migrate.log")
    if code != 0:
        yield Check("live: migrate", False, out[-300:])
        return
    code, out = _run([str(PY), "-m", "security.seed"], env, "seed.log")
    if code != 0:
        yield Check("live: seed", False, out[-300:])
        return
    import redis

    # This run's own Redis DB: start without lock-outs or rate counters left by an earlier run.
    redis.Redis.from_url(f"{REDIS}/{REDIS_DB}").flushdb()
    keys_file = LOGS / "keys.json"
    keys_file.write_text(out.strip().splitlines()[-1])
    keys = json.loads(keys_file.read_text())
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server_log = (LOGS / "daphne.log").open("w")
    server = subprocess.Popen(  # noqa: S603
        [str(ROOT / ".venv" / "bin" / "daphne"), "-b", "127.0.0.1", "-p", str(port), "brokerage.asgi:application"],
        cwd=ROOT, env=env, stdout=server_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        if not _wait(base + "/healthz"):
            yield Check("live: daphne started", False, "no answer on /healthz")
            return
        yield from _schema_complete(base)
        for n, key in enumerate(
            keys[:2]
        ):  # the third user is the conformance run's (stateful fuzzing revokes keys)
            yield from _schemathesis(base, key, n)
        yield from _conformance(base, keys_file)
    finally:
        server.terminate()
        server.wait(timeout=20)
        server_log.close()


def _schema_complete(base: str) -> Iterator[Check]:
    with urllib.request.urlopen(base + "/v1/schema?format=json", timeout=30) as resp:  # noqa: S310
        schema = json.loads(resp.read())
    (LOGS / "openapi.json").write_text(json.dumps(schema, indent=1))
    from django.urls import get_resolver  # noqa: F401 - the routes come from the schema's own walk

    missing = [
        f"{method.upper()} {path}"
        for path, item in schema.get("paths", {}).items()
        for method, op in item.items()
        if method in ("get", "post", "patch", "put", "delete")
        and not {k for k in op.get("responses", {}) if k.startswith("2")}
    ]
    yield Check(f"OpenAPI schema lists {len(schema.get('paths', {}))} paths, each with a 2xx response",
                not missing, "; ".join(missing))  # fmt: skip


CHECKS = ["not_a_server_error", "status_code_conformance", "response_schema_conformance",
          "negative_data_rejection", "ignored_auth", "content_type_conformance"]  # fmt: skip


def _schemathesis(base: str, key: dict[str, str], n: int) -> Iterator[Check]:
    from security.allowlists import SCHEMATHESIS_CHECKS_OFF, SCHEMATHESIS_NEGATIVE_OFF, SCHEMATHESIS_SKIP

    checks = [c for c in CHECKS if c not in SCHEMATHESIS_CHECKS_OFF]
    base_cmd = [
        str(SEC_VENV / "bin" / "schemathesis"), "run", str(LOGS / "openapi.json"), "--url", base,
        "-H", f"APCA-API-KEY-ID: {key['key_id']}", "-H", f"APCA-API-SECRET-KEY: {key['secret']}",
        "--max-examples", MAX_EXAMPLES, "--seed", "20261124", "--no-color",
        "--exclude-path-regex", "^/(v1/auth|admin)",
    ]  # fmt: skip
    # Pass 1: every operation but the skipped ones and those fuzzed without negative_data_rejection.
    cmd = [*base_cmd, "--checks", ",".join(checks)]
    for method, path in [*SCHEMATHESIS_SKIP, *SCHEMATHESIS_NEGATIVE_OFF]:
        cmd += ["--exclude-method", method, "--exclude-path", path]
    yield _schemathesis_pass(cmd, f"schemathesis as user {'AB'[n]}", f"schemathesis-user{n}.log")
    # Pass 2: those operations, with every other check.
    for method, path in SCHEMATHESIS_NEGATIVE_OFF:
        only = [c for c in checks if c != "negative_data_rejection"]
        cmd = [*base_cmd, "--checks", ",".join(only), "--include-method", method, "--include-path", path]
        slug = path.strip("/").replace("/", "_")
        yield _schemathesis_pass(
            cmd,
            f"schemathesis as user {'AB'[n]}: {method} {path} (no negative_data_rejection)",
            f"schemathesis-user{n}-{method}-{slug}.log",
        )


def _schemathesis_pass(cmd: list[str], name: str, log: str) -> Check:
    code, out = _run(cmd, log=log)
    summary = [line for line in out.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    return Check(name, code == 0, (summary[-1] if summary else out[-400:]).strip())


def _conformance(base: str, keys_file: Path) -> Iterator[Check]:
    sys.path.insert(0, str(ROOT))
    from apps.core.datafiles import shared_data_dir

    spec = shared_data_dir() / "alpaca" / "trading-api.openapi.json"
    report = ROOT / "docs" / "security-conformance.md"
    cmd = [
        str(SEC_VENV / "bin" / "python"),
        "security/conformance.py",
        base,
        str(spec),
        str(keys_file),
        str(report),
    ]
    code, out = _run(cmd, log="conformance.log")
    yield Check("Alpaca trading conformance (no missing required field)", code == 0, out.strip()[-300:])


STAGES: list[tuple[str, Callable[[], Iterator[Check]]]] = [
    ("tooling venv", tooling_venv),
    ("allow-lists", allowlists),
    ("check --deploy", check_deploy),
    ("bandit", bandit),
    ("pip-audit", pip_audit),
    ("ruff S", ruff_security),
    ("pytest", pytest_stage),
    ("live", live),
]


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brokerage.settings.test")
    only = set(sys.argv[1:])
    checks: list[Check] = []
    for name, stage in STAGES:
        if only and name not in only:
            continue
        print(f"== {name}", flush=True)
        try:
            for check in stage():
                checks.append(check)
                print(
                    f"  {'PASS' if check.ok else 'FAIL'} {check.name}"
                    + (f"\n       {check.detail}" if not check.ok and check.detail else ""),
                    flush=True,
                )
        except Exception as exc:  # a broken stage is a failure, reported, and the others still run
            checks.append(Check(name, False, repr(exc)))
            print(f"  FAIL {name}: {exc!r}", flush=True)
    passed = sum(c.ok for c in checks)
    failed = len(checks) - passed
    print(f"\nsecurity: {passed} passed, {failed} failed (logs in {LOGS.relative_to(ROOT)})")
    return 1 if failed else 0
