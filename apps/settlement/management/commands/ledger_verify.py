"""``manage.py ledger_verify``: prove cached balances == sum of postings and the trial balance is zero."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.settlement.selectors import ledger_balance_breaks, trial_balance, unbalanced_entries


class Command(BaseCommand):
    help = (
        "Verify the ledger: cached balances equal derived ones, every entry and the trial balance are zero."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        breaks = ledger_balance_breaks()
        trial = trial_balance()
        unbalanced = unbalanced_entries()
        for b in breaks:
            self.stdout.write(
                f"BREAK ledger account {b.ledger_account_id}: cached {b.cached} != derived {b.derived}"
            )
        for asset, total in trial.items():
            self.stdout.write(f"TRIAL BALANCE {asset}: {total}")
        for entry_id in unbalanced:
            self.stdout.write(f"UNBALANCED entry {entry_id}")
        if breaks or trial or unbalanced:
            raise CommandError("ledger verification failed")
        self.stdout.write("ledger OK")
