"""An index for the self-trade check that every order submit runs: the account's open orders on one symbol and
side (``apps.orders.services._OPPOSITE_OPEN_SQL``). Through ``orders_order_acct_status`` that read visited every
open order of the account (1.1 ms with 951 resting, growing with each). Built ``CONCURRENTLY``, so order writes
go on while it builds on a live table (hence a non-atomic migration).
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("accounts", "0006_drop_redundant_indexes"),
        ("orders", "0004_drop_redundant_indexes"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="order",
            index=models.Index(fields=["account", "symbol", "side", "status"], name="orders_order_acct_sym_side"),
        ),
    ]
