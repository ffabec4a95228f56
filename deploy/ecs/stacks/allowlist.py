"""The reviewed checkov allow-list, applied per resource as CloudFormation ``Metadata.checkov.skip`` entries.

Each entry of ``checkov-allowlist.json`` names a construct path prefix, and per check id the reviewed reason.
Checkov reads those skips from the template and reports them as skipped, with the reason, never silently. A
check is never skipped globally: a new resource with the same finding fails the deploy checks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from constructs import IConstruct


@jsii.implements(cdk.IAspect)
class CheckovAllowList:
    def __init__(self, path: Path) -> None:
        self.entries: list[dict[str, Any]] = json.loads(path.read_text())["allow"]
        self.used: set[str] = set()

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, cdk.CfnResource):
            return
        path = node.node.path
        skips = [
            {"id": check, "comment": reason}
            for entry in self.entries
            if path.startswith(entry["path"])
            for check, reason in entry["checks"].items()
        ]
        if skips:
            node.add_metadata("checkov", {"skip": skips})
