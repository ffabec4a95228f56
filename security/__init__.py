"""The security battery behind ``make security`` (``python -m security``).

Stages: static gates (``check --deploy``, bandit, pip-audit, ruff ``S``), the fast deterministic suite in
``tests/security`` (access matrix, bad-input table, credential and WebSocket attacks), Schemathesis against our
own OpenAPI schema on a live daphne, and a conformance run of the Alpaca trading endpoints against Alpaca's
published spec (deviations reported in ``docs/security-conformance.md``; only a missing required field fails).

Invariant: every stage reports ``passed``/``failed`` counts; any failure makes the command exit non-zero. A
finding is silenced only by an entry in ``security.allowlists`` that carries a written reason.
"""
