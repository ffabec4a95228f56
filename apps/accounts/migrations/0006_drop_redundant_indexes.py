"""Drop indexes that another index already covers (fewer index writes per order, fill and ledger entry).

- A foreign key whose column leads a composite index or unique constraint loses its own index.
``tests/core/test_schema_indexes.py`` keeps it so.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_roles"),
    ]

    operations = [
        migrations.AlterField(
            model_name="apikey",
            name="owner",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="api_keys",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
    ]
