"""The ECS plan runs the platform the Procfile runs: every Kafka consumer of the Procfile is an ECS consumer service
under its registry name (what ``run_consumer`` takes and the consumer group id its lag alarm watches), and every
other long-running process type has its service."""

from __future__ import annotations

import json
import re
from pathlib import Path

from apps.core.consumers import consumer_get

ROOT = Path(__file__).resolve().parents[2]
# Procfile process types that are not ECS services, and why.
NOT_ON_ECS = {
    "mm": "demo liquidity for local runs (the entrypoint's market-maker role, started by hand)",
}
# Procfile type -> the entrypoint role its ECS service runs (config.PlatformConfig.processes).
ROLE_OF = {"web": "web", "ws": "ws", "relay": "relay", "engine": "engine", "clock": "clock", "feed": "marketdata",
           "worker": "worker", "beat": "beat"}  # fmt: skip


def _procfile() -> dict[str, str]:
    out = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, command = line.partition(":")
            out[name.strip()] = command.strip()
    return out


def _ecs_consumers() -> dict[str, str]:
    context = json.loads((ROOT / "deploy" / "ecs" / "cdk.json").read_text())["context"]
    return dict(context["consumers"])


def test_ecs_consumers_are_registered_and_cover_the_procfile() -> None:
    ecs = _ecs_consumers()
    for name, topic in ecs.items():
        assert topic in consumer_get(name).topics  # a registry name, on a topic it consumes
    procfile = {m.group(1) for cmd in _procfile().values() if (m := re.search(r"run_consumer (\S+)", cmd))}
    assert procfile == set(ecs)


def test_every_other_procfile_process_has_an_ecs_role() -> None:
    source = (ROOT / "deploy" / "ecs" / "stacks" / "config.py").read_text()
    # config.py imports aws_cdk (the deploy venv only), so its ProcessSpec roles are read from the source.
    roles = set(re.findall(r'ProcessSpec\(\s*f?"[^"]+",\s*\["([a-z-]+)"', source))
    for name, command in _procfile().items():
        if "run_consumer" in command or name in NOT_ON_ECS:
            continue
        assert ROLE_OF[name] in roles, f"Procfile process {name!r} has no ECS service"
