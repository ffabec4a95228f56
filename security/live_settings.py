"""Settings of the live server the fuzz stage runs against: local settings, DEBUG off, brute-force limits high.

The lock-out itself is proven in tests/security and tests/accounts; here schemathesis' invalid-credential probes
must not lock the seeded keys, or every later request would be a 429 and the fuzz would test nothing.
"""

from brokerage.settings.local import *  # noqa: F403

DEBUG = False
ACCOUNTS_BRUTE_FORCE = {
    "ACCOUNT_LIMIT": 1_000_000,
    "IP_LIMIT": 1_000_000,
    "WINDOW_SECONDS": 60,
    "LOCKOUT_SECONDS": 1,
}
