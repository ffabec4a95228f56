"""CDK app: the brokerage platform on AWS ECS Fargate (``python app.py`` synthesizes ``cdk.out``).

Synthesizes offline, without AWS credentials: the account and region are fixed placeholders from ``cdk.json``
(override with ``-c account=... -c region=...`` or CDK_DEPLOY_ACCOUNT / CDK_DEPLOY_REGION), and nothing calls
a context lookup. Three stacks, deployed in order: network (VPC), data (RDS + replica, ElastiCache, MSK,
secrets), platform (cluster, ALB, one service per process type, scaling, logs, alarms). After synthesis the
templates are checked (stacks/invariants.py): only the one-off migrate task can read the RDS master secret.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import aws_cdk as cdk

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the stacks package sits beside app.py

from stacks.allowlist import CheckovAllowList
from stacks.config import PlatformConfig
from stacks.data import DataStack
from stacks.invariants import owner_secret_violations
from stacks.network import NetworkStack
from stacks.platform import PlatformStack

HERE = Path(__file__).resolve().parent


def main() -> None:
    # Run directly (`python app.py`, no CDK CLI): read cdk.json's context ourselves; the CLI passes it in
    # CDK_CONTEXT_JSON instead.
    context = None
    if "CDK_CONTEXT_JSON" not in os.environ:
        context = json.loads((HERE / "cdk.json").read_text())["context"]
    app = cdk.App(outdir=os.environ.get("CDK_OUTDIR") or str(HERE / "cdk.out"), context=context)
    config = PlatformConfig.from_context(app)
    env = cdk.Environment(
        account=os.environ.get("CDK_DEPLOY_ACCOUNT", config.account),
        region=os.environ.get("CDK_DEPLOY_REGION", config.region),
    )
    azs = [f"{env.region}{suffix}" for suffix in ("a", "b", "c")]
    network = NetworkStack(app, "BrokerageNetwork", env=env, azs=azs)
    data = DataStack(app, "BrokerageData", env=env, vpc=network.vpc, app_sg=network.app_sg)
    platform = PlatformStack(app, "BrokeragePlatform", env=env, config=config, network=network, data=data)
    cdk.Tags.of(app).add("project", "brokerage")
    cdk.Aspects.of(app).add(CheckovAllowList(HERE / "checkov-allowlist.json"))
    assembly = app.synth()
    templates = {stack.stack_name: stack.template for stack in assembly.stacks}
    problems = owner_secret_violations(
        platform=templates[platform.stack_name], data=templates[data.stack_name]
    )
    if problems:
        sys.exit("ERROR owner credentials:\n" + "\n".join(problems))


if __name__ == "__main__":
    main()
