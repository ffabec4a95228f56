"""Check 3: two gunicorn web processes behind a round-robin proxy serve one session (stateless web tier).

Both ``gunicorn brokerage.wsgi -c deploy/gunicorn.conf.py`` processes share one PostgreSQL (sessions use the
database backend) and one Redis. One client logs in once through the proxy (CSRF cookie from one backend,
login on the other) and then every request alternates between the backends (``X-Backend``) and stays
authenticated; a logout on one backend ends the session on the other as well; a cookie-less request is refused.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
import uuid
from collections import Counter
from typing import IO

import httpx

from .config import ROOT, ScaleConfig
from .proxy import RoundRobinProxy
from .report import Result

PASSWORD = "scale-Check-" + uuid.uuid4().hex  # a throwaway user of a throwaway database


def _user_create() -> tuple[str, str]:
    """An ACTIVE customer with a password; returns (email, account id). Needs django.setup()."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from apps.accounts.models import BrokerageAccount
    from apps.accounts.services import account_open, account_status_set

    email = f"scale-{uuid.uuid4().hex[:8]}@example.com"
    with transaction.atomic(durable=True):
        user = get_user_model().objects.create_user(username=email, email=email, password=PASSWORD)
        account = account_open(user=user, actor="scale-check")
        account_status_set(account=account, status=BrokerageAccount.Status.ACTIVE, actor="scale-check")
    return email, str(account.pk)


class WebProcess:
    def __init__(self, cfg: ScaleConfig, port: int) -> None:
        self.port = port
        self.log_path = cfg.log_dir / f"web-{port}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        env = {**os.environ, **cfg.django_env(), "PORT": str(port), "GUNICORN_HOST": "127.0.0.1",
               "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "2", "LOG_LEVEL": "WARNING"}  # fmt: skip
        self.proc = subprocess.Popen(  # noqa: S603
            [str(ROOT / ".venv" / "bin" / "gunicorn"), "brokerage.wsgi", "-c", "deploy/gunicorn.conf.py"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"gunicorn on {self.port} exited {self.proc.returncode}; see {self.log_path}"
                )
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"gunicorn on {self.port} not healthy in {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> int | None:
        """SIGTERM (graceful), SIGKILL after 30 s; only this child, by its own pid."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


def run(cfg: ScaleConfig, *, requests: int = 20) -> list[Result]:
    email, account_id = _user_create()
    webs = [WebProcess(cfg, port) for port in cfg.web_ports]
    proxy = RoundRobinProxy(("127.0.0.1", cfg.proxy_port), [("127.0.0.1", port) for port in cfg.web_ports])
    proxy.serve_in_thread()
    try:
        started = time.monotonic()
        for web in webs:
            web.wait_healthy()
        boot_s = time.monotonic() - started
        base = f"http://127.0.0.1:{cfg.proxy_port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            csrf = client.get("/v1/auth/csrf")
            login = client.post(
                "/v1/auth/login",
                json={"email": email, "password": PASSWORD},
                headers={"X-CSRFToken": csrf.json()["csrf_token"]},
            )
            login_backends = (csrf.headers.get("X-Backend"), login.headers.get("X-Backend"))
            started = time.monotonic()
            answers = [client.get("/v2/account") for _ in range(requests)]
            session_s = time.monotonic() - started
            backends = Counter(a.headers.get("X-Backend") for a in answers)
            alternating = all(
                a.headers.get("X-Backend") != b.headers.get("X-Backend")
                for a, b in itertools.pairwise(answers)
            )
            authenticated = [a.status_code == 200 and a.json().get("id") == account_id for a in answers]
            logout = client.post(
                "/v1/auth/logout", headers={"X-CSRFToken": client.cookies.get("csrftoken") or ""}
            )
            after_logout = [client.get("/v2/account") for _ in cfg.web_ports]
        with httpx.Client(base_url=base, timeout=10) as anonymous:
            refused = [anonymous.get("/v2/account").status_code for _ in cfg.web_ports]
    finally:
        proxy.shutdown()
        proxy.server_close()
        statuses = [web.stop() for web in webs]
    pids = ", ".join(f"{w.port}: pid {w.proc.pid}" for w in webs)
    return [
        Result("web: login once through the proxy (CSRF from one backend, login on the other)",
               login.status_code == 200 and login_backends[0] != login_backends[1],
               f"login {login.status_code}; csrf via {login_backends[0]}, login via {login_backends[1]}; "
               f"both gunicorns healthy in {boot_s:.1f} s ({pids})"),
        Result("web: requests alternate between both backends", alternating and len(backends) == 2,
               f"{dict(backends)}; proxy served {proxy.served}"),
        Result("web: the session stays authenticated on both backends", all(authenticated),
               f"{sum(authenticated)}/{requests} GET /v2/account 200 with the account id, in {session_s:.2f} s"),
        Result("web: logout on one backend ends the session on the other",
               logout.status_code == 204 and all(a.status_code in (401, 403) for a in after_logout),
               f"logout {logout.status_code} via {logout.headers.get('X-Backend')}; then "
               f"{[(a.status_code, a.headers.get('X-Backend')) for a in after_logout]}"),
        Result("web: no cookie, no access (on either backend)", all(s in (401, 403) for s in refused),
               f"{refused}"),
        Result("web: both gunicorns exit cleanly on SIGTERM", statuses == [0, 0], f"{statuses}"),
    ]  # fmt: skip
