"""``manage.py sanctions_rescreen --list-dir <dir>``: re-screen every customer against a sanctions list version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.kyc.screening import configured_list_dir
from apps.kyc.services.kyc import sanctions_rescreen_all


class Command(BaseCommand):
    help = "Re-screen every submitted customer against an OFAC SDN list version and flag new matches."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--list-dir", type=Path, default=None, help="folder with sdn.csv (default: configured)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        list_dir: Path = options["list_dir"] or configured_list_dir()
        if not (list_dir / "sdn.csv").is_file():
            raise SystemExit(f"{list_dir} has no sdn.csv")
        summary = sanctions_rescreen_all(list_dir=list_dir)
        self.stdout.write(
            f"list {summary.list_version}: screened {summary.screened}, skipped {summary.skipped}, "
            f"new matches {len(summary.new_matches)}"
        )
        for application_id in summary.new_matches:
            self.stdout.write(f"  new match: application {application_id}")
