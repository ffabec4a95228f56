"""The owner-credentials check that ``deploy/ecs/app.py`` runs on every synthesis (``scripts/deploy_checks.sh``).

Templates here are minimal copies of the synthesized shapes (cross-stack ``Fn::ImportValue`` of the data stack's
exports in container secrets and execution-role policies), so the check runs without aws_cdk or a synthesis.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import pytest

# deploy/ecs is not a package (app.py imports `stacks.*` from beside it): load the module from its file, so
# mypy does not see the same file under two module names.
_PATH = Path(__file__).resolve().parents[2] / "deploy" / "ecs" / "stacks" / "invariants.py"
_spec = importlib.util.spec_from_file_location("ecs_stacks_invariants", _PATH)
assert _spec is not None
assert _spec.loader is not None
invariants: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(invariants)
master_secret_holders = invariants.master_secret_holders
owner_secret_violations = invariants.owner_secret_violations

MASTER_EXPORT = "BrokerageData:ExportsOutputRefPostgresSecretAttachment75CD6F6F9ED7447B"
APP_EXPORT = "BrokerageData:ExportsOutputRefDbAppPassword068EBC57E6E7CFD4"

DATA: dict[str, Any] = {
    "Resources": {
        "PostgresSecret": {"Type": "AWS::SecretsManager::Secret", "Properties": {}},
        "PostgresSecretAttachment": {
            "Type": "AWS::SecretsManager::SecretTargetAttachment",
            "Properties": {"SecretId": {"Ref": "PostgresSecret"}},
        },
        "DbAppPassword": {"Type": "AWS::SecretsManager::Secret", "Properties": {}},
    },
    "Outputs": {
        "ExportsOutputRefPostgresSecretAttachment": {
            "Value": {"Ref": "PostgresSecretAttachment"},
            "Export": {"Name": MASTER_EXPORT},
        },
        "ExportsOutputRefDbAppPassword": {"Value": {"Ref": "DbAppPassword"}, "Export": {"Name": APP_EXPORT}},
    },
}


def _secret(name: str, export: str, key: str | None = None) -> dict[str, Any]:
    value: Any = {"Fn::ImportValue": export}
    if key is not None:
        value = {"Fn::Join": ["", [value, f":{key}::"]]}
    return {"Name": name, "ValueFrom": value}


def _task(name: str, command: list[str], secrets: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    role = f"{name}ExecutionRole"
    return {
        f"{name}task": {
            "Type": "AWS::ECS::TaskDefinition",
            "Properties": {
                "ExecutionRoleArn": {"Fn::GetAtt": [role, "Arn"]},
                "ContainerDefinitions": [{"Name": "app", "Command": command, "Secrets": list(secrets)}],
            },
        },
        f"{name}Policy": {
            "Type": "AWS::IAM::Policy",
            "Properties": {
                "Roles": [{"Ref": role}],
                "PolicyDocument": {
                    "Statement": [
                        {"Action": "secretsmanager:GetSecretValue", "Resource": s["ValueFrom"]}
                        for s in secrets
                    ]
                },
            },
        },
    }


def _service(name: str) -> dict[str, dict[str, Any]]:
    return {
        f"{name}service": {
            "Type": "AWS::ECS::Service",
            "Properties": {"TaskDefinition": {"Ref": f"{name}task"}},
        }
    }


RUNTIME = [_secret("DATABASE_PASSWORD", APP_EXPORT)]
OWNER = [
    _secret("DATABASE_OWNER_USER", MASTER_EXPORT, "username"),
    _secret("DATABASE_OWNER_PASSWORD", MASTER_EXPORT, "password"),
    _secret("DATABASE_APP_PASSWORD", APP_EXPORT),
]


def _platform() -> dict[str, Any]:
    return {
        "Resources": {
            **_task("web", ["web"], RUNTIME),
            **_service("web"),
            **_task("engine", ["engine", "--partitions", "0,1"], RUNTIME),
            **_service("engine"),
            **_task("migrate", ["migrate"], RUNTIME + OWNER),
        }
    }


def test_only_the_migrate_task_holds_the_owner_secret() -> None:
    platform = _platform()
    assert master_secret_holders(platform=platform, data=DATA) == {"migratetask"}
    assert owner_secret_violations(platform=platform, data=DATA) == []


def _service_container_has_owner(platform: dict[str, Any]) -> None:
    platform["Resources"]["webtask"]["Properties"]["ContainerDefinitions"][0]["Secrets"].append(OWNER[1])


def _service_role_may_read_owner(platform: dict[str, Any]) -> None:
    statements = platform["Resources"]["enginePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    statements.append(
        {"Action": "secretsmanager:GetSecretValue", "Resource": {"Fn::ImportValue": MASTER_EXPORT}}
    )


def _migrate_runs_as_service(platform: dict[str, Any]) -> None:
    platform["Resources"].update(_service("migrate"))


def _no_migrate_task(platform: dict[str, Any]) -> None:
    for key in ("migratetask", "migratePolicy"):
        del platform["Resources"][key]


def _other_one_off_holds_owner(platform: dict[str, Any]) -> None:
    platform["Resources"].update(_task("shell", ["bash"], RUNTIME + OWNER))


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(
            _service_container_has_owner,
            ["webtask runs as an ECS service and can read the RDS master (owner) secret"],
            id="service-container-secret",
        ),
        pytest.param(
            _service_role_may_read_owner,
            ["enginetask runs as an ECS service and can read the RDS master (owner) secret"],
            id="service-execution-role-policy",
        ),
        pytest.param(
            _migrate_runs_as_service,
            [
                "migratetask runs as an ECS service and can read the RDS master (owner) secret",
                "0 migrate task definitions (outside any service) hold the master secret",
            ],
            id="migrate-as-a-service",
        ),
        pytest.param(
            _no_migrate_task,
            ["0 migrate task definitions (outside any service) hold the master secret"],
            id="no-migrate-task",
        ),
        pytest.param(
            _other_one_off_holds_owner,
            ["shelltask can read the RDS master secret but is not the migrate task: [['bash']]"],
            id="other-one-off-task",
        ),
    ],
)
def test_owner_secret_outside_the_migrate_task_is_reported(mutate: Any, expected: list[str]) -> None:
    platform = copy.deepcopy(_platform())
    mutate(platform)
    assert owner_secret_violations(platform=platform, data=DATA) == expected


def test_a_data_stack_without_the_master_secret_export_is_reported() -> None:
    data = copy.deepcopy(DATA)
    del data["Outputs"]["ExportsOutputRefPostgresSecretAttachment"]
    assert owner_secret_violations(platform=_platform(), data=data) == [
        "the data stack exports no RDS master secret (SecretTargetAttachment): check the invariant"
    ]
