"""Drop indexes that another index already covers (fewer index writes per order, fill and ledger entry).

- A foreign key whose column leads a composite index or unique constraint loses its own index.
- A unique CharField (fill_id, order_id) becomes a UniqueConstraint: the same unique index, without the
  ``varchar_pattern_ops`` LIKE index Django adds beside a unique CharField (nothing queries these by prefix).
New unique constraints are created before the old ones are dropped, in the same transaction.
``tests/core/test_schema_indexes.py`` keeps it so.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0006_drop_redundant_indexes"),
        ("orders", "0003_asset_split_epoch"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="fill",
            constraint=models.UniqueConstraint(fields=("fill_id",), name="orders_fill_fill_id_uniq"),
        ),
        migrations.AlterField(
            model_name="fill",
            name="fill_id",
            field=models.CharField(max_length=64),
        ),
        migrations.AlterField(
            model_name="order",
            name="account",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="orders",
                to="accounts.brokerageaccount",
            ),
        ),
        migrations.AlterField(
            model_name="tradeupdate",
            name="account",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="accounts.brokerageaccount",
            ),
        ),
    ]
