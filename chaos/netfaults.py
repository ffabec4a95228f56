"""Network faults: every platform process reaches PostgreSQL, Redis and Kafka through toxiproxy, and the fault
thread degrades one of those links for a few seconds at a time.

Why a proxy: without root there is no ``tc netem`` here, and a kill -9 only tests a clean break. A proxy gives
the failure modes a real network has between an ECS task and RDS/ElastiCache/MSK: high latency with jitter, a
link that stalls (partition) and then resumes, connections reset mid-stream, a starved link (bandwidth), and a
lossy link, where a share of connections stall and are cut (TCP turns packet loss into stalls and timeouts,
never into missing bytes, so that is what the platform sees).

Invariants:
- Only the links of the chaos instance are proxied (ports from ``ChaosConfig``); the shared services are never
  touched. Kafka advertises the proxy's port (``KAFKA_ADVERTISED_PORT``), so every broker connection, including
  the metadata-directed ones, passes through the proxy.
- A fault is always removed by the thread that added it (``try/finally``), and ``reset()`` clears every toxic
  before the drain and the audit, so the auditor reads through a clean link.

toxiproxy (Shopify, MIT) is built once from the Go module proxy at a pinned version into ``.run/bin``.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from chaos.config import ROOT, ChaosConfig

TOXIPROXY_MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"
TOXIPROXY_VERSION = "v2.5.0"

NET_FAULTS = ("net_latency", "net_partition", "net_reset", "net_bandwidth", "net_loss")
LINKS = ("postgres", "redis", "kafka")


def toxiproxy_binary() -> Path:
    """The pinned toxiproxy server, built with ``go install`` the first time (about 30 s)."""
    path = ROOT / ".run" / "bin" / f"toxiproxy-server-{TOXIPROXY_VERSION}"
    if path.exists():
        return path
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise RuntimeError("network faults need Go to build toxiproxy (or pass --no-network-faults)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as gobin:
        subprocess.run(  # noqa: S603
            [go, "install", f"{TOXIPROXY_MODULE}@{TOXIPROXY_VERSION}"],
            env={**os.environ, "GOBIN": gobin, "GOFLAGS": "-mod=mod"},
            check=True,
            timeout=900,
        )
        shutil.move(str(Path(gobin) / "server"), path)
    return path


def _toxic(fault: str, rng: random.Random) -> list[dict[str, Any]]:
    """The toxics of one fault; both directions unless the mode is one-sided by nature."""
    if fault == "net_latency":
        attrs = {"latency": rng.randint(150, 800), "jitter": rng.randint(50, 300)}
        return [
            {"type": "latency", "stream": s, "toxicity": 1.0, "attributes": attrs}
            for s in ("upstream", "downstream")
        ]
    if fault == "net_partition":
        # timeout 0: nothing passes and nothing is closed until the toxic is removed; then the stream resumes.
        return [
            {"type": "timeout", "stream": s, "toxicity": 1.0, "attributes": {"timeout": 0}}
            for s in ("upstream", "downstream")
        ]
    if fault == "net_reset":
        reset = {"timeout": rng.randint(0, 500)}
        return [{"type": "reset_peer", "stream": "downstream", "toxicity": 0.5, "attributes": reset}]
    if fault == "net_bandwidth":
        return [
            {"type": "bandwidth", "stream": s, "toxicity": 1.0, "attributes": {"rate": 16}}
            for s in ("upstream", "downstream")
        ]
    if fault == "net_loss":
        # A lossy link: 30% of the connections stall and are cut after 2 s; the rest arrive in small, delayed
        # segments (what retransmission looks like from the application).
        return [
            {"type": "timeout", "stream": "downstream", "toxicity": 0.3, "attributes": {"timeout": 2000}},
            {"type": "slicer", "stream": "downstream", "toxicity": 1.0,
             "attributes": {"average_size": 64, "size_variation": 32, "delay": 2000}},
        ]  # fmt: skip
    raise ValueError(fault)


@dataclass
class NetworkFaults:
    cfg: ChaosConfig
    process: subprocess.Popen[bytes] | None = None
    applied: list[dict[str, Any]] = field(default_factory=list)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.cfg.toxiproxy_port}"

    def upstreams(self) -> dict[str, tuple[int, int]]:
        """link → (listen port seen by the platform, real service port)."""
        c = self.cfg
        return {
            "postgres": (c.pg_proxy_port, c.pg_port),
            "redis": (c.redis_proxy_port, c.redis_port),
            "kafka": (c.kafka_proxy_port, c.kafka_port),
        }

    def start(self) -> None:
        binary = toxiproxy_binary()
        self.cfg.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.cfg.log_dir / "toxiproxy.log").open("ab")
        self.process = subprocess.Popen(  # noqa: S603
            [str(binary), "-host", "127.0.0.1", "-port", str(self.cfg.toxiproxy_port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.api}/version", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(
                        f"toxiproxy did not start; see {self.cfg.log_dir}/toxiproxy.log"
                    ) from None
                time.sleep(0.2)
        for name, (listen, upstream) in self.upstreams().items():
            r = httpx.post(
                f"{self.api}/proxies",
                json={"name": name, "listen": f"127.0.0.1:{listen}", "upstream": f"127.0.0.1:{upstream}"},
                timeout=5,
            )
            if r.status_code not in (201, 409):
                raise RuntimeError(f"toxiproxy refused proxy {name}: {r.status_code} {r.text}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)

    def reset(self) -> None:
        """Remove every toxic and re-enable every proxy."""
        httpx.post(f"{self.api}/reset", timeout=5).raise_for_status()

    def inject(self, fault: str, rng: random.Random) -> dict[str, Any]:
        """Degrade one link with ``fault`` for 2-6 s, then remove it. Returns what was applied."""
        link = rng.choice(LINKS)
        toxics = _toxic(fault, rng)
        hold = rng.uniform(2.0, 6.0)
        names: list[str] = []
        try:
            for i, toxic in enumerate(toxics):
                name = f"{fault}_{i}"
                r = httpx.post(f"{self.api}/proxies/{link}/toxics", json={"name": name, **toxic}, timeout=5)
                r.raise_for_status()
                names.append(name)
            time.sleep(hold)
        finally:
            for name in names:
                httpx.delete(f"{self.api}/proxies/{link}/toxics/{name}", timeout=5)
        entry = {"link": link, "toxics": toxics, "held_s": round(hold, 2)}
        self.applied.append({"fault": fault, **entry})
        return entry
