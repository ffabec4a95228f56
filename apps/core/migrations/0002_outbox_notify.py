"""Every statement that adds outbox rows notifies the relay (``NOTIFY outbox_relay`` at its commit).

The relay LISTENs and wakes at the commit instead of finding the rows at its next timed poll (``apps.core.relay``).
A statement-level trigger: one notification per inserting statement (COPY included), and PostgreSQL folds the
identical notifications of one transaction into one, delivered only if the transaction commits.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION core_storedevent_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('outbox_relay', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER core_storedevent_inserted
    AFTER INSERT ON core_storedevent
    FOR EACH STATEMENT EXECUTE FUNCTION core_storedevent_notify();
"""

REVERSE = """
DROP TRIGGER IF EXISTS core_storedevent_inserted ON core_storedevent;
DROP FUNCTION IF EXISTS core_storedevent_notify();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_initial"),
    ]

    operations = [migrations.RunSQL(FORWARD, reverse_sql=REVERSE)]
