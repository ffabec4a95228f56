"""Base settings: everything lives here; environments differ by environment variables only.

One env reader (django-environ). Production secrets have no defaults (see ``production.py``).
Every variable is documented in the README's configuration table.
"""

import tempfile
from pathlib import Path
from typing import Any

import django_stubs_ext
import environ

# Lets generic Django classes (ModelAdmin[Model], QuerySet[Model]) be subscripted at run time too.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent.parent
CONFIG_DIR = BASE_DIR / "config"

env = environ.Env()
# A local, git-ignored .env file may hold developer overrides; the process environment wins.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# --- Core -------------------------------------------------------------------------------------------
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="dev-only-insecure-secret-key-change-me-0123456789abcdef")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# Not "daphne": as an app it only makes ``runserver`` serve ASGI, and it imports daphne.server (Twisted) into every
# process at start-up (about 0.4 s of CPU each: web workers, engine, consumers, Celery). The ws process runs daphne
# itself (deploy/ws_server.py), as ``make run`` and production do.
INSTALLED_APPS = [
    # django.contrib.admin, with the OTP-enforcing site as the default (accounts block below).
    "apps.accounts.admin_config.BrokerageAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "apps.core",
    "apps.accounts",
    "apps.kyc",
    "apps.orders",
    "apps.settlement",
    "apps.marketdata",
]

MIDDLEWARE = [
    "apps.core.middleware.RequestContextMiddleware",
    "apps.core.middleware.HealthProbeMiddleware",
    "apps.core.middleware.MetricsMiddleware",
    # Security battery (make security): NUL bytes in a path or query would reach PostgreSQL as a 500.
    "apps.core.middleware.NulByteRejectMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "brokerage.urls"
WSGI_APPLICATION = "brokerage.wsgi.application"
ASGI_APPLICATION = "brokerage.asgi.application"
# Alpaca's SDK does not follow redirects, so routes have no trailing slash and none is added.
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: PostgreSQL is the book of record -----------------------------------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default="postgres://brokerage:brokerage@127.0.0.1:55432/brokerage"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False  # transactions are explicit, at the service boundary
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True


def database_options(database: dict[str, Any]) -> None:
    """Connection options of the primary (here and in ``production.py``): a connect timeout, and server-side
    binding, so psycopg prepares a statement on its connection once it has run ``DATABASE_PREPARE_THRESHOLD``
    times there: later runs skip PostgreSQL's parse and plan, and no literal is quoted into the SQL client-side.
    On ``POST /v2/orders`` (12 statements) about a third less PostgreSQL CPU per order (docs/PERFORMANCE.md).
    0 turns preparing off, for a transaction-pooling proxy that cannot carry prepared statements.

    A dead peer must not hang a process or its locks forever (a failover that leaves a half-open socket sends no
    reset): TCP keepalives and ``tcp_user_timeout`` close the client's socket within about a minute, and the
    server ends a session left idle inside a transaction for ``DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_S``, so the
    row locks of a client that stalled mid-transaction are released. 0 leaves that one out (for a proxy that
    refuses startup options)."""
    options = database.setdefault("OPTIONS", {})
    options.setdefault("connect_timeout", 5)
    options.setdefault("server_side_binding", True)
    options.setdefault("prepare_threshold", env.int("DATABASE_PREPARE_THRESHOLD", default=5) or None)
    options.setdefault("keepalives", 1)
    options.setdefault("keepalives_idle", env.int("DATABASE_KEEPALIVES_IDLE_S", default=30))
    options.setdefault("keepalives_interval", 10)
    options.setdefault("keepalives_count", 3)
    options.setdefault("tcp_user_timeout", env.int("DATABASE_TCP_USER_TIMEOUT_MS", default=30_000))
    idle_s = env.float("DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_S", default=120.0)
    if idle_s > 0:
        options.setdefault("options", f"-c idle_in_transaction_session_timeout={round(idle_s * 1000)}")


database_options(DATABASES["default"])
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth -------------------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/admin/login/"

# --- Accounts: authentication, API keys, brute-force limits, 2FA, email (apps.accounts) ----------------
# The password backend shares brute-force counters between the API login and the admin login.
AUTHENTICATION_BACKENDS = ["apps.accounts.backends.GuardedModelBackend"]
# Server-side pepper of the API-key secret hash (HMAC-SHA256); rotating it invalidates every API key.
ACCOUNTS_API_KEY_PEPPER = env.str("ACCOUNTS_API_KEY_PEPPER", default="dev-only-api-key-pepper-change-me")
ACCOUNTS_BRUTE_FORCE = {
    "ACCOUNT_LIMIT": env.int("ACCOUNTS_BRUTE_FORCE_ACCOUNT_LIMIT", default=5),
    "IP_LIMIT": env.int("ACCOUNTS_BRUTE_FORCE_IP_LIMIT", default=50),
    "WINDOW_SECONDS": env.int("ACCOUNTS_BRUTE_FORCE_WINDOW_SECONDS", default=900),
    "LOCKOUT_SECONDS": env.int("ACCOUNTS_BRUTE_FORCE_LOCKOUT_SECONDS", default=900),
}
PASSWORD_RESET_TIMEOUT = env.int("PASSWORD_RESET_TIMEOUT", default=3600)  # seconds; tokens are single-use
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="Brokerage")
OTP_TOTP_THROTTLE_FACTOR = 1
OTP_STATIC_THROTTLE_FACTOR = 1
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="no-reply@brokerage.local")

# --- I18N / time: store UTC, compute trade dates in America/New_York ---------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("DJANGO_STATIC_ROOT", default=BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
MEDIA_ROOT = env.path("DJANGO_MEDIA_ROOT", default=BASE_DIR / ".run" / "media")
MEDIA_URL = "media/"

# Request bodies: orders are small; an oversized body is a 4xx, never a memory problem.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE", default=2 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# --- DRF --------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_PARSER_CLASSES": ["apps.core.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["apps.core.renderers.DecimalSafeJSONRenderer"],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        # A session of a user with 2FA enrolled must be OTP-verified (API keys are unaffected).
        "apps.accounts.permissions.OtpVerifiedIfEnrolled",
    ],
    "EXCEPTION_HANDLER": "apps.core.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "COERCE_DECIMAL_TO_STRING": True,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Brokerage API",
    "DESCRIPTION": "Alpaca v2 compatible trading and market-data API, plus the /v1 onboarding API.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # `check --deploy` generates the schema and fails on any drf-spectacular warning (W001) or view without
    # serializer information (W002): every APIView documents its request and response (apps/core/schema.py).
    "ENABLE_DJANGO_DEPLOY_CHECK": True,
    # Security battery: every operation documents the core error answers (schemathesis checks statuses).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.core.openapi.error_responses_hook",
    ],
}

# --- Redis, cache, Channels ---------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:56379/0")
CACHES = {
    "default": {
        "BACKEND": "apps.core.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    },
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": env.str("CHANNEL_LAYER_BACKEND", default="channels_redis.pubsub.RedisPubSubChannelLayer"),
        "CONFIG": {
            "hosts": [env.str("CHANNELS_REDIS_URL", default=REDIS_URL)],
            # Names every channel and group (pub/sub channels are global to a Redis server, not per DB).
            "prefix": env.str("CHANNEL_LAYER_PREFIX", default="asgi"),
        },
    },
}

# --- Kafka --------------------------------------------------------------------------------------------
KAFKA = {
    "BOOTSTRAP_SERVERS": env.str("KAFKA_BOOTSTRAP_SERVERS", default="127.0.0.1:19092"),
    # A prefix lets several environments (or test runs) share one cluster without colliding.
    "TOPIC_PREFIX": env.str("KAFKA_TOPIC_PREFIX", default=""),
    "TOPICS_FILE": env.path("KAFKA_TOPICS_FILE", default=CONFIG_DIR / "kafka" / "topics.toml"),
    "CLIENT_ID": env.str("KAFKA_CLIENT_ID", default="brokerage"),
    "REQUEST_TIMEOUT_MS": env.int("KAFKA_REQUEST_TIMEOUT_MS", default=10000),
    # Longest wait between reconnection attempts to a broker (librdkafka's default is 10 s): after an outage a
    # client reconnects within about this long of the broker's return (docs/backbone.md, "Broker restarts").
    "RECONNECT_BACKOFF_MAX_MS": env.int("KAFKA_RECONNECT_BACKOFF_MAX_MS", default=1000),
    # "none": a client that loses every broker at once keeps them and reconnects, instead of re-bootstrapping
    # (librdkafka's default), which decommissions them and can leave a cached coordinator pointing at a dead
    # handle: the engine's ``send_offsets_to_transaction`` then never returned (librdkafka #5511, #5456).
    "METADATA_RECOVERY_STRATEGY": env.str("KAFKA_METADATA_RECOVERY_STRATEGY", default="none"),
    # PLAINTEXT locally; SSL on MSK (TLS-only). Passed to every client as security.protocol.
    "SECURITY_PROTOCOL": env.str("KAFKA_SECURITY_PROTOCOL", default="PLAINTEXT"),
}
# The matching engine the engine process runs (apps.orders.engine_impl): "native" (Rust, engine_native/, built by
# `make venv` and the image) or "python" (engine/, the specification). Same events and snapshots either way.
ENGINE_IMPLEMENTATION = env.str("ENGINE_IMPLEMENTATION", default="native")
# The relay LISTENs for the outbox's commits (apps.core.relay) and probes every LISTEN_POLL_INTERVAL_S without one;
# LISTEN off (a transaction-pooling proxy cannot carry it): it polls every POLL_INTERVAL_S.
OUTBOX_RELAY = {
    "BATCH_SIZE": env.int("OUTBOX_RELAY_BATCH_SIZE", default=500),
    "POLL_INTERVAL_S": env.float("OUTBOX_RELAY_POLL_INTERVAL_S", default=0.02),
    "LISTEN": env.bool("OUTBOX_RELAY_LISTEN", default=True),
    "LISTEN_POLL_INTERVAL_S": env.float("OUTBOX_RELAY_LISTEN_POLL_INTERVAL_S", default=1.0),
}
# Heartbeats (apps.core.runtime.Heartbeat): the outbox relay, every Kafka consumer, the session clock, the feed and
# Celery beat touch <dir>/brokerage-<relay|clock|feed|beat>.alive or brokerage-consumer-<name>.alive from their loop
# (at most once a second); deploy/healthcheck.py fails one whose file is older than PROCESS_HEARTBEAT_MAX_AGE_S (its
# environment, default 120 s). Empty: no heartbeat.
PROCESS_HEARTBEAT_DIR = env.str("PROCESS_HEARTBEAT_DIR", default=tempfile.gettempdir())

# --- Celery: no loss ----------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL.rsplit("/", 1)[0] + "/1")
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes every database connection before and after EVERY task unless this is set: the
# fills bridge then spent ~30 % of its worker's time opening PostgreSQL connections (bench/ingest.py profile).
# Reused for this many tasks, then closed; Django's CONN_HEALTH_CHECKS still tests a reused connection.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
# A task that outlives the visibility timeout is redelivered: keep it well above the hard time limit.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = (
    # kyc: the AML-on-trades Kafka bridge task runs on the compliance queue (first: routers are tried in order).
    "apps.kyc.celery_routes.compliance_bridge_route",
    {
        "apps.settlement.tasks.*": {"queue": "settlement"},
        "apps.kyc.tasks.*": {"queue": "compliance"},
        "apps.core.tasks.*": {"queue": "default"},
    },
)
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A worker whose broker connection broke under an ack shuts down warm, for its supervisor to restart it with fresh
# connections (apps/core/celery_watch.py: kombu's Redis transport can otherwise leave it up and consuming nothing).
CELERY_WORKER_RESTART_ON_ACK_FAILURE = env.bool("CELERY_WORKER_RESTART_ON_ACK_FAILURE", default=True)
# Liveness (apps/core/celery_liveness.py): each worker consumes its own direct queue and pings itself through it
# every interval; a pool child running the ping touches the file, and deploy/healthcheck.py fails a worker whose
# file is older than CELERY_WORKER_LIVENESS_MAX_AGE_S (its environment; default 360 s, above the hard time limit).
CELERY_WORKER_DIRECT = True
CELERY_WORKER_LIVENESS_FILE = env.str(
    "CELERY_WORKER_LIVENESS_FILE", default=str(Path(tempfile.gettempdir()) / "brokerage-celery-worker.alive")
)
CELERY_WORKER_LIVENESS_INTERVAL_S = env.float("CELERY_WORKER_LIVENESS_INTERVAL_S", default=15.0)
CELERY_TIMEZONE = "UTC"
# Beat touches its heartbeat file at every pass (apps/core/celery_beat.py); passes are at most this far apart.
CELERY_BEAT_SCHEDULER = "apps.core.celery_beat:HeartbeatScheduler"
CELERY_BEAT_MAX_LOOP_INTERVAL = env.float("CELERY_BEAT_MAX_LOOP_INTERVAL", default=30.0)

# --- Markets --------------------------------------------------------------------------------------------
# "xnys": the real NYSE calendar. "always_open": a simulated demo market open around the clock.
MARKET_CALENDAR = env.str("MARKET_CALENDAR", default="xnys")
MARKET_CLOCK_OFFSET_SECONDS = env.int("MARKET_CLOCK_OFFSET_SECONDS", default=0)

# --- Security ---------------------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
FIELD_ENCRYPTION_KEYS = env.list(
    "FIELD_ENCRYPTION_KEYS", default=["dGVzdC1vbmx5LWZpZWxkLWtleS1jaGFuZ2UtbWUtMDA="]
)

# --- Logging: JSON lines with request and correlation ids -------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# The ``Environment`` dimension of every CloudWatch EMF metric (apps.core.emf); the CDK stack sets it.
METRICS_ENVIRONMENT = env.str("METRICS_ENVIRONMENT", default="local")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "apps.core.logging.ContextFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(correlation_id)s",
            "rename_fields": {"asctime": "ts", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["context"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "kafka": {"level": "WARNING"},
    },
}

# --- Orders: pre-trade risk rules (apps.orders.risk) ------------------------------------------------------
# Versioned config: every rejection names the rule, this version, its inputs and the threshold. Change any
# value → bump ORDERS_RISK["version"]. Decimals are strings (never floats).
ORDERS_RISK = {
    "version": env.str("ORDERS_RISK_VERSION", default="2026-11-25.1"),
    # Limit prices may not be more aggressive than the reference price ± this fraction; market buys hold
    # reference × qty × (1 + collar).
    "price_collar": env.str("ORDERS_PRICE_COLLAR", default="0.10"),
    "max_notional": env.str("ORDERS_MAX_NOTIONAL", default="1000000"),
    "max_qty": env.str("ORDERS_MAX_QTY", default="100000"),
    "rate_limit_count": env.int("ORDERS_RATE_LIMIT_COUNT", default=120),
    "rate_limit_window_s": env.int("ORDERS_RATE_LIMIT_WINDOW_S", default=60),
}

# --- KYC, sanctions, AML, funding (apps.kyc) ---------------------------------------------------------------
# Residence countries we serve (ISO 3166-1 alpha-3, Alpaca's convention).
KYC_ALLOWED_COUNTRIES = env.list("KYC_ALLOWED_COUNTRIES", default=["USA"])
KYC_DOCUMENT_MAX_BYTES = env.int("KYC_DOCUMENT_MAX_BYTES", default=1024 * 1024)
# The OFAC SDN list version screened against; None means shared_data_dir()/"ofac"/"2022-01-31".
SANCTIONS_LIST_DIR = env.str("SANCTIONS_LIST_DIR", default="") or None
SANCTIONS_REVIEW_THRESHOLD = env.int("SANCTIONS_REVIEW_THRESHOLD", default=88)
# Withdrawals above this amount need two approvers besides the requester (four eyes).
TRANSFER_LARGE_WITHDRAWAL_AMOUNT = env.str("TRANSFER_LARGE_WITHDRAWAL_AMOUNT", default="25000")
# Seconds between simulated ACH steps (QUEUED -> PENDING -> COMPLETE); small locally so demos finish quickly.
TRANSFER_SIMULATION_STEP_SECONDS = env.int("TRANSFER_SIMULATION_STEP_SECONDS", default=2)
# Periodic kyc tasks (merged into any schedule defined above): weekly sanctions re-screen against the configured
# list, and a sweep that advances simulated transfers whose Celery chain was lost.
CELERY_BEAT_SCHEDULE = {
    **globals().get("CELERY_BEAT_SCHEDULE", {}),
    "kyc-sanctions-rescreen": {"task": "apps.kyc.tasks.sanctions_rescreen", "schedule": 7 * 24 * 3600.0},
    "kyc-transfers-sweep": {"task": "apps.kyc.tasks.transfers_sweep", "schedule": 60.0},
    # Settlement is idempotent, so running it often just moves whatever became due (T+1) without delay.
    "settlement-run-due": {"task": "apps.settlement.tasks.settlement_run_due", "schedule": 300.0},
    # Reconciliation proves the books hourly; each run writes a report and halts accounts with breaks.
    "settlement-reconciliation": {"task": "apps.settlement.tasks.reconciliation_run_all", "schedule": 3600.0},
    # Dividends are paid on their pay date (idempotent per corporate action; a late run pays what is due).
    "settlement-dividends-due": {
        "task": "apps.settlement.tasks.corporate_actions_pay_due",
        "schedule": 3600.0,
    },
    # core (issue 8): Celery backlog as the EMF metric Brokerage/CeleryQueueDepth, which scales the workers.
    "core-celery-queue-depth": {"task": "apps.core.tasks.celery_queue_depth_publish", "schedule": 60.0},
}

# --- Market data (apps.marketdata) ---------------------------------------------------------------------
# Browser origins allowed on the data stream (/v2/{feed}); connections without an Origin header are programs.
MARKETDATA_WS_ALLOWED_ORIGINS = env.list("MARKETDATA_WS_ALLOWED_ORIGINS", default=[])
MARKETDATA_WS_AUTH_TIMEOUT = env.int("MARKETDATA_WS_AUTH_TIMEOUT", default=10)
# Slow data stream clients (apps.marketdata.ws): above this many unsent bytes in a connection's transport the
# stream only conflates; still above it after MARKETDATA_WS_SLOW_CLIENT_SECONDS → error 407 "slow client".
MARKETDATA_WS_MAX_BACKLOG_BYTES = env.int("MARKETDATA_WS_MAX_BACKLOG_BYTES", default=1 << 20)
MARKETDATA_WS_SLOW_CLIENT_SECONDS = env.float("MARKETDATA_WS_SLOW_CLIENT_SECONDS", default=10.0)
# Market data REST without authentication (demo deployments only).
MARKETDATA_REST_PUBLIC = env.bool("MARKETDATA_REST_PUBLIC", default=False)
# Circuit breaker on the market data Redis: open after fail_max errors, probe again after reset_timeout s.
MARKETDATA_REDIS_BREAKER = {
    "fail_max": env.int("MARKETDATA_REDIS_BREAKER_FAIL_MAX", default=3),
    "reset_timeout": env.int("MARKETDATA_REDIS_BREAKER_RESET_S", default=5),
}
# Demo reference price publisher (manage.py run_marketdata_feed): one historical day per N real minutes.
MARKETDATA_FEED_DAY_MINUTES = env.int("MARKETDATA_FEED_DAY_MINUTES", default=10)
MARKETDATA_FEED_INTERVAL_S = env.int("MARKETDATA_FEED_INTERVAL_S", default=2)

# --- Database read replica (brokerage.db_router; deploy) ---------------------------------------------------
# Only when DATABASE_REPLICA_URL is set: a "replica" alias (never migrated; in tests a mirror of "default"), the
# router, and the middleware that gives each request a fresh read-your-writes context.
REPLICA_ROUTING = {
    # App labels or "app.Model" labels whose reads may use the replica (reports, market-data history, activities).
    "READ_MODELS": env.list("REPLICA_READ_MODELS", default=["marketdata", "reports", "activities"]),
    "MAX_LAG_SECONDS": env.float("REPLICA_MAX_LAG_SECONDS", default=5.0),
    "MAX_LAG_BYTES": env.int("REPLICA_MAX_LAG_BYTES", default=16 * 1024 * 1024),
    "LAG_CHECK_INTERVAL_S": env.float("REPLICA_LAG_CHECK_INTERVAL_S", default=1.0),
    "PIN_AFTER_WRITE_S": env.float("REPLICA_PIN_AFTER_WRITE_S", default=5.0),
}
DATABASE_REPLICA_URL = env.str("DATABASE_REPLICA_URL", default="")
if DATABASE_REPLICA_URL:
    from brokerage.db_router import replica_database

    DATABASES["replica"] = replica_database(DATABASE_REPLICA_URL, primary=DATABASES["default"])
    DATABASE_ROUTERS = ["brokerage.db_router.PrimaryReplicaRouter"]
    MIDDLEWARE = [*MIDDLEWARE[:1], "brokerage.db_router.ReplicaPinMiddleware", *MIDDLEWARE[1:]]
