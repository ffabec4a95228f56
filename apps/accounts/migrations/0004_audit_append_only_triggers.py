"""PostgreSQL refuses UPDATE and DELETE on audit records, whoever asks (the application role included).

TRUNCATE is deliberately not blocked: Django's test flush uses it; the hash chain still exposes a truncated
history (the chain head row no longer matches the records).
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION accounts_auditrecord_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'accounts_auditrecord is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER accounts_auditrecord_no_update
    BEFORE UPDATE ON accounts_auditrecord
    FOR EACH ROW EXECUTE FUNCTION accounts_auditrecord_append_only();

CREATE TRIGGER accounts_auditrecord_no_delete
    BEFORE DELETE ON accounts_auditrecord
    FOR EACH ROW EXECUTE FUNCTION accounts_auditrecord_append_only();
"""

REVERSE = """
DROP TRIGGER IF EXISTS accounts_auditrecord_no_delete ON accounts_auditrecord;
DROP TRIGGER IF EXISTS accounts_auditrecord_no_update ON accounts_auditrecord;
DROP FUNCTION IF EXISTS accounts_auditrecord_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_api_keys_and_audit_trail"),
    ]

    operations = [migrations.RunSQL(FORWARD, reverse_sql=REVERSE)]
