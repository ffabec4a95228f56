"""Balanced journal entries checked once per INSERT statement instead of once per posting at commit.

The rule is the same as in 0002: every journal entry's postings sum to zero per asset, for every writer. 0002 ran
a deferred row trigger: at COMMIT, once per inserted posting, the sum of that posting's whole entry, so an entry of
five postings was summed five times and a projection chunk of 220 postings ran 220 queries at commit
(``python -m bench.projection --db-statements``: the postings' deferred work was most of the chunk's COMMIT).
Every writer inserts an entry's postings in one statement (``settlement.services._entry_post``: one CTE with the
entry; ``settlement.bulk``: one COPY for all of a batch's entries), so a statement-level trigger with a transition
table checks each touched entry once, with one query, at the end of the statement. It is stricter than the
deferred check: an entry's postings can no longer be assembled over several statements of one transaction.
"""

import importlib

from django.db import migrations

STATEMENT_SQL = """
DROP TRIGGER IF EXISTS settlement_posting_balanced ON settlement_posting;
DROP FUNCTION IF EXISTS settlement_entry_balanced_check();

CREATE FUNCTION settlement_entries_balanced_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT p.entry_id, p.asset, SUM(p.amount) AS total INTO bad
    FROM settlement_posting p
    WHERE p.entry_id IN (SELECT DISTINCT entry_id FROM inserted)
    GROUP BY p.entry_id, p.asset HAVING SUM(p.amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % does not balance: % sums to %', bad.entry_id, bad.asset, bad.total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER settlement_postings_balanced
    AFTER INSERT ON settlement_posting
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION settlement_entries_balanced_check();
"""

# Reverse: back to 0002's deferred row trigger.
ROW_SQL = (
    "DROP TRIGGER IF EXISTS settlement_postings_balanced ON settlement_posting;\n"
    "DROP FUNCTION IF EXISTS settlement_entries_balanced_check();\n"
    + importlib.import_module("apps.settlement.migrations.0002_ledger_integrity_triggers").BALANCED_SQL
)


class Migration(migrations.Migration):
    dependencies = [("settlement", "0006_drop_redundant_indexes")]

    operations = [migrations.RunSQL(STATEMENT_SQL, reverse_sql=ROW_SQL)]
