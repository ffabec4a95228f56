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
        ("settlement", "0005_cost_basis_method_lot_selection"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="cashhold",
            constraint=models.UniqueConstraint(fields=("order_id",), name="settlement_cashhold_order_uniq"),
        ),
        migrations.AddConstraint(
            model_name="sharereservation",
            constraint=models.UniqueConstraint(
                fields=("order_id",), name="settlement_sharereservation_order_uniq"
            ),
        ),
        migrations.AlterField(
            model_name="cashaccountrestriction",
            name="account",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="cash_restrictions",
                to="accounts.brokerageaccount",
            ),
        ),
        migrations.AlterField(
            model_name="cashhold",
            name="order_id",
            field=models.CharField(max_length=64),
        ),
        migrations.AlterField(
            model_name="goodfaithviolation",
            name="account",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="good_faith_violations",
                to="accounts.brokerageaccount",
            ),
        ),
        migrations.AlterField(
            model_name="goodfaithviolation",
            name="buy_entry",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="settlement.journalentry",
            ),
        ),
        migrations.AlterField(
            model_name="journalentry",
            name="account",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="journal_entries",
                to="accounts.brokerageaccount",
            ),
        ),
        migrations.AlterField(
            model_name="ledgeraccount",
            name="account",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="ledger_accounts",
                to="accounts.brokerageaccount",
            ),
        ),
        migrations.AlterField(
            model_name="lotselection",
            name="reservation",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="lot_selections",
                to="settlement.sharereservation",
            ),
        ),
        migrations.AlterField(
            model_name="posting",
            name="ledger_account",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="postings",
                to="settlement.ledgeraccount",
            ),
        ),
        migrations.AlterField(
            model_name="settlementobligation",
            name="trade_entry",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="obligations",
                to="settlement.journalentry",
            ),
        ),
        migrations.AlterField(
            model_name="sharereservation",
            name="account",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="share_reservations",
                to="accounts.brokerageaccount",
            ),
        ),
        migrations.AlterField(
            model_name="sharereservation",
            name="order_id",
            field=models.CharField(max_length=64),
        ),
        migrations.AlterField(
            model_name="taxlot",
            name="account",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="tax_lots",
                to="accounts.brokerageaccount",
            ),
        ),
    ]
