"""Seed version 1 of the AML thresholds (effective from the platform's epoch). Later versions are added rows."""

from datetime import UTC, datetime
from decimal import Decimal

from django.db import migrations


def seed(apps, schema_editor):
    AmlThresholdSet = apps.get_model("kyc", "AmlThresholdSet")
    AmlThresholdSet.objects.get_or_create(
        version=1,
        defaults={
            "effective_from": datetime(2020, 1, 1, tzinfo=UTC),
            "large_cash_amount": Decimal("10000"),
            "structuring_floor": Decimal("8000"),
            "structuring_min_count": 3,
            "structuring_window_hours": 24 * 7,
            "rapid_window_hours": 72,
            "rapid_min_ratio": Decimal("0.8"),
            "rapid_min_amount": Decimal("5000"),
            "rapid_max_trades": 2,
            "wash_window_seconds": 300,
            "dormant_days": 180,
            "dormant_min_amount": Decimal("5000"),
            "note": "Initial thresholds: CTR-style $10,000 cash reporting level; structuring band $8,000-$9,999.99.",
        },
    )


def unseed(apps, schema_editor):
    apps.get_model("kyc", "AmlThresholdSet").objects.filter(version=1).delete()


class Migration(migrations.Migration):
    dependencies = [("kyc", "0001_kyc_aml_transfers")]

    operations = [migrations.RunPython(seed, unseed)]
