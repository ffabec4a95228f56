"""Production: secrets come only from the environment, with no defaults; HTTPS everywhere."""

from brokerage.settings.base import *  # noqa: F403
from brokerage.settings.base import database_options, env

DEBUG = False
SECRET_KEY = env.str("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
DATABASES = {"default": env.db_url("DATABASE_URL")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
database_options(DATABASES["default"])
# Two database roles (docs/security.md, "Audit trail"). DATABASE_URL is the runtime role (`<db>_app`, made by
# `manage.py db_roles`): DML only, INSERT/SELECT on the audit trail, owns nothing. MIGRATION_DATABASE_URL is
# the owner; a process started with DJANGO_DATABASE_ROLE=owner (`migrate`, then `db_roles`) connects as it.
DATABASE_APP_ROLE = env.str("DATABASE_APP_ROLE", default="")
if env.str("DJANGO_DATABASE_ROLE", default="runtime") == "owner":
    DATABASES["default"].update(env.db_url("MIGRATION_DATABASE_URL"))
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS")
if DATABASE_REPLICA_URL:  # noqa: F405 - the read replica (see brokerage.db_router)
    from brokerage.db_router import replica_database

    DATABASES["replica"] = replica_database(DATABASE_REPLICA_URL, primary=DATABASES["default"])  # noqa: F405

SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
# The load balancer terminates TLS and forwards the original scheme.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
# API-key secrets are HMAC'd with this pepper; mail must go to a real backend.
ACCOUNTS_API_KEY_PEPPER = env.str("ACCOUNTS_API_KEY_PEPPER")
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend")
