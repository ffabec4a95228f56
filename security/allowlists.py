"""Every finding the battery tolerates, each with the reason it was reviewed and accepted.

An entry without a reason is a failure of the battery itself: ``allowlist_check()`` enforces it.
"""

from __future__ import annotations

# Tables that may change while a request is refused, so "database unchanged" ignores them.
VOLATILE_TABLES: dict[str, str] = {
    "django_session": "session login/verification state of the test clients, not business data",
}

# bandit test ids (or "<test id>:<path>") accepted project-wide, with the reason.
BANDIT: dict[str, str] = {
    "B101": (
        "assert states internal invariants (the project's lint policy ignores ruff S101 for the same reason); "
        "input is validated by serializers and services, and production never runs python -O"
    ),
    "B105:apps/accounts/authentication.py": "SECRET_HEADER is the header *name* APCA-API-SECRET-KEY, not a secret",
    "B105:apps/accounts/bruteforce.py": "PATH_PASSWORD is a counter namespace string, not a password",
    "B608:apps/core/consumers.py": (
        "bulk inbox INSERT ... SELECT FROM unnest(...): only the table name is formatted in (model meta); every "
        "value is a bound parameter"
    ),
    "B608:apps/orders/projection.py": (
        "UPDATE ... FROM (VALUES ...): table and column names come from Order._meta, the casts from the model "
        "fields' db_type; every value is a bound parameter"
    ),
    "B608:apps/orders/services.py": (
        "SELECT ... FOR KEY SHARE on the asset (Django has no KEY SHARE): table/column names from model meta, the "
        "symbols and ids are bound parameters"
    ),
    "B608:apps/accounts/selectors.py": (
        "the API-key authentication read (one join of key, user and account): column lists and table names from "
        "model meta; the key id is a bound parameter"
    ),
    "B608:apps/core/outbox.py": (
        "the first event's CTE: the aggregate's INSERT comes from apps.core.sql.insert_statement (model meta, one "
        "placeholder per column); every value is a bound parameter"
    ),
    "B608:apps/core/sql.py": (
        "insert_statement / select_list build statements from a model's meta (quoted table and column names, one "
        "placeholder per column); callers bind every value"
    ),
    "B608:apps/settlement/bulk.py": (
        "the projection's fixed settlement statements (session 19) and _rows_update's UPDATE ... FROM unnest: "
        "table names from model meta, column names and casts from module constants; every value is a bound "
        "parameter (arrays)"
    ),
    "B608:apps/settlement/services.py": (
        "the ledger rows' lock, the journal entry's CTE and the fee rules in force: table and column names from "
        "model meta or module constants; every value is a bound parameter"
    ),
    "B311:apps/core/transactions.py": "retry back-off jitter, not security-relevant randomness",
    "B311:apps/marketdata/feed.py": "synthetic demo market data, not security-relevant randomness",
}

# pip-audit vulnerability ids (GHSA-/PYSEC-/CVE-) accepted, with the reason.
PIP_AUDIT: dict[str, str] = {}

# `manage.py check --deploy` message ids accepted under the production settings, with the reason.
CHECK_DEPLOY: dict[str, str] = {}

# Schemathesis: operations excluded from the stateless fuzz run (method, path) and why.
SCHEMATHESIS_SKIP: dict[tuple[str, str], str] = {}

# Operations fuzzed WITHOUT the negative_data_rejection check (every other check still runs on them), and why.
SCHEMATHESIS_NEGATIVE_OFF: dict[tuple[str, str], str] = {
    ("PATCH", "/v1/account/cost-basis"): (
        "schemathesis 4.32.5 learns the error body's details.errors and adds it to a valid request as a "
        "'negative' case ({'method': 'FIFO', 'details': {'errors': {}}}); that body is valid under our schema "
        "(extra members are allowed), so accepting it is correct"
    ),
    ("POST", "/v2/orders/batch"): (
        "same schemathesis artefact: {'orders': [{}], 'details': {'errors': {}}} is a valid envelope; each empty "
        "order is refused inside the 207 with its own 422"
    ),
}

# Schemathesis checks switched off, and why.
SCHEMATHESIS_CHECKS_OFF: dict[str, str] = {
    "content_type_conformance": (
        "only ?format=html trips it: DRF's URL format override labels the JSON error body text/html; the "
        "override stays because the schema endpoint is served as ?format=json (see docs/security.md)"
    ),
}


# Bad-input cases a target may accept (2xx), keyed (scope, case label); scope is a target label, "<location>-<kind>"
# or "<location>". The database-unchanged rule still applies to them.
BAD_INPUT_ACCEPTED: dict[tuple[str, str], str] = {
    ("query", "empty"): "an empty query parameter means 'not given': the same answer as omitting it, a read",
    ("query-int", "fullwidth-digits"): (
        "paging/depth integers parse with int(), which reads Unicode digits by value; still bounded by "
        "min/max and never money (decimals are ASCII-only via StrictDecimalField)"
    ),
    (
        "kyc",
        "empty",
    ): "an empty POST /v1/accounts/kyc is an empty partial save: it answers the application as is",
}


def allowlist_check() -> list[str]:
    """Entries that lack a reason (must be empty)."""
    problems: list[str] = []
    for name, table in (
        ("VOLATILE_TABLES", VOLATILE_TABLES),
        ("BANDIT", BANDIT),
        ("PIP_AUDIT", PIP_AUDIT),
        ("CHECK_DEPLOY", CHECK_DEPLOY),
        ("SCHEMATHESIS_SKIP", SCHEMATHESIS_SKIP),
        ("SCHEMATHESIS_NEGATIVE_OFF", SCHEMATHESIS_NEGATIVE_OFF),
        ("SCHEMATHESIS_CHECKS_OFF", SCHEMATHESIS_CHECKS_OFF),
        ("BAD_INPUT_ACCEPTED", BAD_INPUT_ACCEPTED),
    ):
        problems += [f"{name}[{key!r}] has no reason" for key, why in table.items() if len(why.strip()) < 10]
    return problems
