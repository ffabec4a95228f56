"""The live stack: the platform's REAL processes as subprocesses against this session's test database.

``live_stack`` (module scope) starts daphne (HTTP + the ``/stream`` WebSocket), the outbox relay, the engine,
the ``orders.projection`` consumer (which books fills), the ``kyc.aml_trades`` Kafka->Celery bridge and a Celery
worker (the Procfile's processes on the order path), each
with this session's database, Redis DBs and Kafka topic prefix, and ``MARKET_CALENDAR=always_open`` so tests can
trade at any hour. Logs go to ``.run/e2e-logs/<xdist worker>/<process>.log``; a failing test gets their tails in
its report.
Teardown: SIGTERM to each process group, SIGKILL after a grace period.

Data written by the tests' setup must be COMMITTED for the subprocesses to see it, so these tests do not use
``django_db`` (its per-test rollback/flush would hide or wipe the module's data): module fixtures write through
``django_db_blocker`` in autocommit, and the module's teardown flushes the database as a transactional test
would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import transaction

ROOT = Path(__file__).resolve().parents[2]
# One directory per pytest-xdist worker: two workers may each run an e2e module (make test: --dist loadfile).
LOG_DIR = ROOT / ".run" / "e2e-logs" / os.environ.get("PYTEST_XDIST_WORKER", "main")
WAIT_S = 90.0  # upper bound on waiting for asynchronous effects (never a pass/fail timing assertion)
T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The live stack's own Kafka namespace (set by ``live_stack``): its topics hold only its own events, and its
# engine's transactional ids never meet the fenced-off producers of engine tests killed earlier in the session.
_STACK_PREFIX: list[str] = []


def _kafka_prefix() -> str:
    return _STACK_PREFIX[-1] if _STACK_PREFIX else str(settings.KAFKA["TOPIC_PREFIX"])


def subprocess_env() -> dict[str, str]:
    """The environment of every live process: this session's database, Redis DBs and Kafka prefix."""
    db = settings.DATABASES["default"]
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.e2e.live_settings",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "KAFKA_TOPIC_PREFIX": _kafka_prefix(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "MARKET_CALENDAR": "always_open",
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "INFO",
    }


def _commands(port: int) -> dict[str, list[str]]:
    py = sys.executable
    return {
        "web": [py, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "brokerage.asgi:application"],
        "relay": [py, "manage.py", "run_outbox_relay"],
        "engine": [py, "manage.py", "run_engine"],
        "projection": [py, "manage.py", "run_consumer", "orders.projection"],
        "aml": [py, "manage.py", "run_consumer", "kyc.aml_trades"],
        "worker": [
            py,
            "-m",
            "celery",
            "-A",
            "brokerage",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "INFO",
            "--queues",
            "default,settlement,compliance",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
    }


@dataclass
class LiveStack:
    port: int
    extra: dict[str, list[str]] = field(default_factory=dict)  # more processes beside the standard ones
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stream"

    def dead(self) -> dict[str, int]:
        return {name: rc for name, p in self.procs.items() if (rc := p.poll()) is not None}

    def log_tails(self, lines: int = 40) -> str:
        out = []
        for name, path in self.logs.items():
            text = path.read_text(errors="replace").splitlines() if path.exists() else []
            rc = self.procs[name].poll()
            out.append(f"----- {name} (exit {rc}) {path} -----")
            out.extend(line[:400] for line in text[-lines:])  # one JSON traceback line can be 50 kB
        return "\n".join(out)

    def start(self) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        env = subprocess_env()
        for name, argv in {**_commands(self.port), **self.extra}.items():
            path = LOG_DIR / f"{name}.log"
            self.logs[name] = path
            with path.open("wb") as log:
                # Own session: teardown signals the whole group (celery's children included).
                self.procs[name] = subprocess.Popen(
                    argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while True:
            if dead := self.dead():
                raise RuntimeError(f"live processes exited early: {dead}\n{self.log_tails()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"web did not become healthy\n{self.log_tails()}")
            time.sleep(0.3)

    def stop(self, grace: float = 20.0) -> dict[str, int | None]:
        """SIGTERM every process group, wait, then SIGKILL what is left. Returns the exit codes."""
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        return {name: proc.returncode for name, proc in self.procs.items()}


def eventually(check: Callable[[], T | None], *, what: str, stack: LiveStack | None = None) -> T:
    """Poll ``check`` until it returns something truthy; fail with the processes' logs if it never does."""
    deadline = time.monotonic() + WAIT_S
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            logs = stack.log_tails() if stack is not None else ""
            raise AssertionError(f"gave up waiting for {what}\n{logs}")
        time.sleep(0.2)


_CURRENT: list[LiveStack] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and _CURRENT:
        report.sections.append(("live stack logs", _CURRENT[-1].log_tails()))


@pytest.fixture(scope="module")
def live_db(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """Committed access to the test database for the module; flushed at the end (as a transactional test)."""
    from django.db import connection
    from django.db.backends.base.creation import TEST_DATABASE_PREFIX
    from django.test.utils import setup_databases, teardown_databases

    with django_db_blocker.unblock():
        own = None
        if not connection.settings_dict["NAME"].startswith(TEST_DATABASE_PREFIX):
            # pytest-django sets up databases only for tests marked django_db; none here is (its per-test
            # flush would wipe the module's data), so when this module runs alone it creates the test DB.
            own = setup_databases(verbosity=0, interactive=False, aliases={"default"})  # type: ignore[arg-type]
        try:
            yield
        finally:
            call_command("flush", interactive=False, verbosity=0)
            if own is not None:
                teardown_databases(own, verbosity=0)


@contextlib.contextmanager
def live_stack_running(extra: dict[str, list[str]] | None = None) -> Iterator[LiveStack]:
    """The live stack in its own Kafka namespace (``extra``: more processes, e.g. a second consumer)."""
    from django.test import override_settings

    from apps.core import kafka

    prefix = f"{settings.KAFKA['TOPIC_PREFIX']}e2e{uuid.uuid4().hex[:6]}."
    with override_settings(KAFKA={**settings.KAFKA, "TOPIC_PREFIX": prefix}):
        created = sorted(kafka.topics_ensure())
    _STACK_PREFIX.append(prefix)
    stack = LiveStack(port=_free_port(), extra=extra or {})
    _CURRENT.append(stack)
    stack.start()
    try:
        stack.wait_ready()
        yield stack
    finally:
        codes = stack.stop()
        _CURRENT.remove(stack)
        _STACK_PREFIX.remove(prefix)
        kafka.topics_delete(created)
        print("live stack stopped:", codes)


@pytest.fixture(scope="module")
def live_stack(kafka_topics: list[str], live_db: None) -> Iterator[LiveStack]:
    with live_stack_running() as stack:
        yield stack


# ----------------------------------------------------------------------------------------- customers


@dataclass(frozen=True)
class Customer:
    email: str
    account_id: uuid.UUID
    key_id: str
    secret: str


def customer_create(
    *, email: str, cash: Decimal = Decimal(0), shares: dict[str, Decimal] | None = None
) -> Customer:
    """An ACTIVE customer through the accounts services (audited), funded through the ledger services."""
    from django.contrib.auth import get_user_model

    from apps.accounts.models import BrokerageAccount
    from apps.accounts.services import account_open, account_status_set, api_key_create
    from apps.settlement.services import cash_deposit_post, shares_deposit_post

    user = get_user_model().objects.create_user(
        username=email.split("@")[0], email=email, password=uuid.uuid4().hex
    )
    with transaction.atomic():
        account = account_open(user=user, actor="e2e-setup")
        account_status_set(
            account=account, status=BrokerageAccount.Status.ACTIVE, actor="e2e-setup", reason="e2e"
        )
    if cash:
        with transaction.atomic():
            cash_deposit_post(account=account, amount=cash, transfer_id=f"e2e-cash-{account.pk}")
    for symbol, qty in (shares or {}).items():
        with transaction.atomic():
            shares_deposit_post(
                account=account,
                symbol=symbol,
                qty=qty,
                cost_basis=Decimal("0"),
                transfer_id=f"e2e-shares-{account.pk}-{symbol}",
            )
    key, secret = api_key_create(owner=user, name="e2e", scopes=["read", "trade"])
    return Customer(email=email, account_id=account.pk, key_id=key.key_id, secret=secret)


def asset_create(symbol: str, reference_price: Decimal) -> None:
    """A fractionable NASDAQ asset on a $0.01 tick (the price collar is 10% around ``reference_price``)."""
    from apps.orders.models import Asset

    Asset.objects.update_or_create(
        symbol=symbol,
        defaults={
            "name": f"{symbol} common stock",
            "exchange": "NASDAQ",
            "price_increment": Decimal("0.01"),
            "min_order_size": Decimal("0.000000001"),
            "min_trade_increment": Decimal("0.000000001"),
            "fractionable": True,
            "reference_price": reference_price,
        },
    )
