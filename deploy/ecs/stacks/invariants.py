"""Checks on the synthesized templates that the stacks' code alone does not make obvious (run by ``app.py``).

Owner credentials: the RDS master secret (the PostgreSQL owner role) may reach exactly one task definition, the
one-off ``migrate`` task (command ``["migrate"]``, no service). No task definition that an ECS service runs may
reference it, neither in its containers' secrets nor in its execution role's policies (which is what lets ECS
fetch a secret), so no long-running process ever holds the owner's password.

Plain dictionaries in, messages out: no aws_cdk import, so the tests run in the project venv.
"""

from __future__ import annotations

import json
from typing import Any

Template = dict[str, Any]


def _resources(template: Template, kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template.get("Resources", {}).items() if v.get("Type") == kind}


def _mentions(value: Any, needles: set[str]) -> bool:
    text = json.dumps(value)
    return any(needle in text for needle in needles)


def master_secret_exports(data: Template) -> set[str]:
    """Export names of the data stack's outputs that carry the RDS master secret (or its attachment)."""
    ids = set(_resources(data, "AWS::SecretsManager::SecretTargetAttachment"))
    for attachment in list(ids):
        secret = data["Resources"][attachment]["Properties"].get("SecretId", {})
        if isinstance(secret, dict) and "Ref" in secret:
            ids.add(secret["Ref"])
    refs = {json.dumps({"Ref": i}) for i in ids}
    return {
        str(output["Export"]["Name"])
        for output in data.get("Outputs", {}).values()
        if "Export" in output and _mentions(output.get("Value"), refs)
    }


def master_secret_holders(*, platform: Template, data: Template) -> set[str]:
    """Logical ids of the platform's task definitions whose containers or execution role reference the secret."""
    exports = master_secret_exports(data)
    if not exports:
        return set()
    policies = _resources(platform, "AWS::IAM::Policy")
    holders = set()
    for task_id, task in _resources(platform, "AWS::ECS::TaskDefinition").items():
        props = task["Properties"]
        role = props.get("ExecutionRoleArn", {}).get("Fn::GetAtt", [None])[0]
        role_policies = [
            p["Properties"]["PolicyDocument"]
            for p in policies.values()
            if {"Ref": role} in p["Properties"].get("Roles", [])
        ]
        if _mentions(props.get("ContainerDefinitions"), exports) or _mentions(role_policies, exports):
            holders.add(task_id)
    return holders


def owner_secret_violations(*, platform: Template, data: Template) -> list[str]:
    """Empty when only the migrate task definition, and no service's, can read the RDS master secret."""
    problems: list[str] = []
    if not master_secret_exports(data):
        return ["the data stack exports no RDS master secret (SecretTargetAttachment): check the invariant"]
    holders = master_secret_holders(platform=platform, data=data)
    served = {
        s["Properties"]["TaskDefinition"]["Ref"]
        for s in _resources(platform, "AWS::ECS::Service").values()
        if isinstance(s["Properties"].get("TaskDefinition"), dict)
    }
    for task_id in sorted(holders & served):
        problems.append(f"{task_id} runs as an ECS service and can read the RDS master (owner) secret")
    tasks = _resources(platform, "AWS::ECS::TaskDefinition")
    migrate_tasks = 0
    for task_id in sorted(holders - served):
        commands = [c.get("Command") for c in tasks[task_id]["Properties"]["ContainerDefinitions"]]
        if commands == [["migrate"]]:
            migrate_tasks += 1
        else:
            problems.append(
                f"{task_id} can read the RDS master secret but is not the migrate task: {commands}"
            )
    if migrate_tasks != 1:
        problems.append(
            f"{migrate_tasks} migrate task definitions (outside any service) hold the master secret"
        )
    return problems
