"""``manage.py run_market_maker``: demo liquidity from an ordinary API client (see ``apps.orders.marketmaker``).

Credentials: ``--key-id``/``--secret-key``, else ``MM_API_KEY_ID``/``MM_API_SECRET_KEY``, else the
``market_maker`` entry of ``.run/demo-credentials.json`` (written by ``manage.py demo_setup``). SIGTERM/SIGINT
cancel its open orders and exit.
"""

from __future__ import annotations

import logging
import os
import signal
from decimal import Decimal
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.orders.management.commands.demo_setup import credentials_load
from apps.orders.marketmaker import MarketMaker, MarketMakerConfig


class Command(BaseCommand):
    help = "Quote two-sided limit orders around the reference price through the REST API, until SIGTERM."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        port = os.environ.get("PORT", "8000")
        parser.add_argument("--base-url", default=os.environ.get("MM_BASE_URL", f"http://127.0.0.1:{port}"))
        parser.add_argument("--key-id", default=os.environ.get("MM_API_KEY_ID"))
        parser.add_argument("--secret-key", default=os.environ.get("MM_API_SECRET_KEY"))
        parser.add_argument("--symbols", default="", help="comma-separated (default: every active asset)")
        parser.add_argument("--half-spread", default="0.002", help="fraction of the reference price per side")
        parser.add_argument("--qty", default="10", help="shares per quote")
        parser.add_argument("--max-inventory", default="500", help="shares either side of the start")
        parser.add_argument("--refresh", type=float, default=2.0, help="seconds between quote refreshes")

    def handle(self, *args: Any, **options: Any) -> None:
        key_id, secret = options["key_id"], options["secret_key"]
        if not (key_id and secret):
            entry = credentials_load().get("market_maker") or {}
            key_id, secret = entry.get("key_id"), entry.get("secret_key")
        if not (key_id and secret):
            raise CommandError(
                "no market-maker API key: run manage.py demo_setup or pass --key-id/--secret-key"
            )
        config = MarketMakerConfig(
            base_url=options["base_url"],
            key_id=key_id,
            secret_key=secret,
            symbols=tuple(s.strip().upper() for s in options["symbols"].split(",") if s.strip()),
            half_spread=Decimal(options["half_spread"]),
            qty=Decimal(options["qty"]),
            max_inventory=Decimal(options["max_inventory"]),
            refresh_s=options["refresh"],
        )
        maker = MarketMaker(config)
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request drowns the demo log

        def stop(signum: int, _frame: FrameType | None) -> None:
            maker.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        maker.run()
        self.stdout.write("market maker stopped")
