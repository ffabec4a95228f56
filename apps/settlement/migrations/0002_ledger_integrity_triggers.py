"""PostgreSQL-level ledger rules: balanced entries (deferred), immutable postings/entries, cash on the money quantum.

These hold for every writer, including raw SQL and the admin: the application cannot book an unbalanced entry or
rewrite history. TRUNCATE (test database flushes) is deliberately not blocked.
"""

from django.db import migrations

BALANCED_SQL = """
CREATE FUNCTION settlement_entry_balanced_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT asset, SUM(amount) AS total INTO bad
    FROM settlement_posting WHERE entry_id = NEW.entry_id
    GROUP BY asset HAVING SUM(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % does not balance: % sums to %', NEW.entry_id, bad.asset, bad.total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER settlement_posting_balanced
    AFTER INSERT ON settlement_posting
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION settlement_entry_balanced_check();
"""

BALANCED_REVERSE = """
DROP TRIGGER IF EXISTS settlement_posting_balanced ON settlement_posting;
DROP FUNCTION IF EXISTS settlement_entry_balanced_check();
"""

IMMUTABLE_SQL = """
CREATE FUNCTION settlement_immutable_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is immutable: % refused (book a reversing entry instead)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER settlement_posting_immutable
    BEFORE UPDATE OR DELETE ON settlement_posting
    FOR EACH ROW EXECUTE FUNCTION settlement_immutable_guard();
CREATE TRIGGER settlement_journalentry_immutable
    BEFORE UPDATE OR DELETE ON settlement_journalentry
    FOR EACH ROW EXECUTE FUNCTION settlement_immutable_guard();
"""

IMMUTABLE_REVERSE = """
DROP TRIGGER IF EXISTS settlement_posting_immutable ON settlement_posting;
DROP TRIGGER IF EXISTS settlement_journalentry_immutable ON settlement_journalentry;
DROP FUNCTION IF EXISTS settlement_immutable_guard();
"""

CASH_QUANTUM_SQL = """
ALTER TABLE settlement_posting ADD CONSTRAINT settlement_posting_cash_quantum
    CHECK (asset <> 'USD' OR amount = round(amount, 4));
"""

CASH_QUANTUM_REVERSE = "ALTER TABLE settlement_posting DROP CONSTRAINT IF EXISTS settlement_posting_cash_quantum;"


class Migration(migrations.Migration):
    dependencies = [("settlement", "0001_ledger_core")]

    operations = [
        migrations.RunSQL(BALANCED_SQL, BALANCED_REVERSE),
        migrations.RunSQL(IMMUTABLE_SQL, IMMUTABLE_REVERSE),
        migrations.RunSQL(CASH_QUANTUM_SQL, CASH_QUANTUM_REVERSE),
    ]
