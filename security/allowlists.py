"""Every finding the battery tolerates, each with the reason it was reviewed and accepted.

An entry without a reason is a failure of the battery itself: ``allowlist_check()`` enforces it.
"""

from __future__ import annotations

# Tables that may change while a request is refused, so "database unchanged" ignores them.
VOLATILE_TABLES: dict[str, str] = {
    "django_session": "session login/verification state of the test clients, not business data",
}

# bandit test ids (or "<test id>:<path>") accepted project-wide, with the reason.
BANDIT: dict[str, str] = {}

# pip-audit vulnerability ids (GHSA-/PYSEC-/CVE-) accepted, with the reason.
PIP_AUDIT: dict[str, str] = {}

# `manage.py check --deploy` message ids accepted under the production settings, with the reason.
CHECK_DEPLOY: dict[str, str] = {}

# Schemathesis: operations excluded from the stateless fuzz run (method, path) and why.
SCHEMATHESIS_SKIP: dict[tuple[str, str], str] = {}


def allowlist_check() -> list[str]:
    """Entries that lack a reason (must be empty)."""
    problems: list[str] = []
    for name, table in (
        ("VOLATILE_TABLES", VOLATILE_TABLES),
        ("BANDIT", BANDIT),
        ("PIP_AUDIT", PIP_AUDIT),
        ("CHECK_DEPLOY", CHECK_DEPLOY),
        ("SCHEMATHESIS_SKIP", SCHEMATHESIS_SKIP),
    ):
        problems += [f"{name}[{key!r}] has no reason" for key, why in table.items() if len(why.strip()) < 10]
    return problems
