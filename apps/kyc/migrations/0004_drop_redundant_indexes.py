"""Drop indexes that another index already covers (fewer index writes per order, fill and ledger entry).

- A foreign key whose column leads a composite index or unique constraint loses its own index.
``tests/core/test_schema_indexes.py`` keeps it so.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0006_drop_redundant_indexes"),
        ("kyc", "0003_sanctions_screening_matcher_version"),
    ]

    operations = [
        migrations.AlterField(
            model_name="accountdevice",
            name="account",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="accounts.brokerageaccount",
            ),
        ),
        migrations.AlterField(
            model_name="amltradeobservation",
            name="account",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="accounts.brokerageaccount",
            ),
        ),
        migrations.AlterField(
            model_name="kycagreement",
            name="application",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="agreements",
                to="kyc.kycapplication",
            ),
        ),
        migrations.AlterField(
            model_name="transfer",
            name="account",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="transfers",
                to="accounts.brokerageaccount",
            ),
        ),
    ]
