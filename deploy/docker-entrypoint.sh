#!/usr/bin/env bash
# Container entrypoint: one image, one process per container, selected by the first argument.
#
#   web                      gunicorn (WSGI: DRF + admin), config deploy/gunicorn.conf.py, port $PORT
#   ws                       daphne via deploy/ws_server.py (ASGI: WebSocket streams), port $WS_PORT
#   relay                    outbox relay (claims unpublished outbox rows, publishes to Kafka)
#   worker [queues]          Celery worker; queues default to $CELERY_QUEUES
#   beat                     Celery beat (exactly one replica)
#   engine [--partitions P]  matching engine for a symbol-partition group; default $ENGINE_PARTITIONS
#   consumer <name>          one registered Kafka consumer (manage.py run_consumer <name>)
#   marketdata               market-data feed publisher
#   clock                    market session clock (exactly one replica)
#   market-maker             demo liquidity
#   migrate                  as the DB owner: migrations, then the runtime role (db_roles); then Kafka topics
#                            (a one-off task before a rollout; the only task given the owner's credentials)
#   manage <args...>         any manage.py command
#   anything else            executed as given (e.g. `bash` for debugging)
#
# Invariant: every long-running process is started with `exec`, so it is PID 1 and receives ECS's SIGTERM
# directly (no shell in between swallowing it); each handles SIGTERM by draining within the stop timeout.
set -euo pipefail
cd /app 2>/dev/null || cd "$(dirname "$0")/.."

# On ECS the connection parts arrive separately (endpoints as env, credentials as ECS secrets); Django reads
# URLs. Compose them here, percent-encoding the credentials. Set DATABASE_URL etc. directly to skip this.
# DATABASE_USER/PASSWORD is the runtime role; DATABASE_OWNER_USER/PASSWORD (the migrate task only) the owner,
# composed into MIGRATION_DATABASE_URL (same host, port, database and sslmode).
compose_urls() {
    python - <<'PY'
import os
from urllib.parse import quote

e = os.environ
out = {}
if not e.get("DATABASE_URL") and e.get("DATABASE_HOST"):
    cred = f"{quote(e['DATABASE_USER'], safe='')}:{quote(e['DATABASE_PASSWORD'], safe='')}"
    tail = f"{e.get('DATABASE_PORT', '5432')}/{e.get('DATABASE_NAME', 'brokerage')}?sslmode=require"
    out["DATABASE_URL"] = f"postgres://{cred}@{e['DATABASE_HOST']}:{tail}"
    if e.get("DATABASE_OWNER_USER") and not e.get("MIGRATION_DATABASE_URL"):
        owner = f"{quote(e['DATABASE_OWNER_USER'], safe='')}:{quote(e['DATABASE_OWNER_PASSWORD'], safe='')}"
        out["MIGRATION_DATABASE_URL"] = f"postgres://{owner}@{e['DATABASE_HOST']}:{tail}"
    if e.get("DATABASE_REPLICA_HOST") and not e.get("DATABASE_REPLICA_URL"):
        out["DATABASE_REPLICA_URL"] = f"postgres://{cred}@{e['DATABASE_REPLICA_HOST']}:{tail}"
if not e.get("REDIS_URL") and e.get("REDIS_HOST"):
    base = f"rediss://:{quote(e.get('REDIS_AUTH_TOKEN', ''), safe='')}@{e['REDIS_HOST']}:{e.get('REDIS_PORT', '6379')}"
    out["REDIS_URL"] = f"{base}/0"
    out.setdefault("CELERY_BROKER_URL", f"{base}/1")
for key, value in out.items():
    print(f"export {key}='{value}'")
PY
}
eval "$(compose_urls)"

role="${1:-web}"
[[ $# -gt 0 ]] && shift

case "$role" in
    web)
        exec gunicorn brokerage.wsgi --config deploy/gunicorn.conf.py "$@" ;;
    ws)
        # daphne behind deploy/ws_server.py: SIGTERM drains (readiness 503, then close 1012) instead of dropping
        # every socket at once; WS_DRAIN_SECONDS + WS_CLOSE_GRACE_SECONDS stay below the ECS stopTimeout.
        exec python deploy/ws_server.py --bind "${WS_HOST:-0.0.0.0}" --port "${WS_PORT:-8001}" \
            --proxy-headers --application-close-timeout 20 "$@" brokerage.asgi:application ;;
    relay)
        exec python manage.py run_outbox_relay "$@" ;;
    worker)
        exec celery -A brokerage worker --loglevel "${LOG_LEVEL:-INFO}" \
            --concurrency "${CELERY_CONCURRENCY:-2}" --queues "${1:-${CELERY_QUEUES:-default,settlement,compliance}}" ;;
    beat)
        exec celery -A brokerage beat --loglevel "${LOG_LEVEL:-INFO}" \
            --schedule "${CELERY_BEAT_SCHEDULE:-/tmp/celerybeat-schedule}" "$@" ;;
    engine)
        if [[ $# -eq 0 ]]; then
            : "${ENGINE_PARTITIONS:?engine needs --partitions or ENGINE_PARTITIONS}"
            set -- --partitions "$ENGINE_PARTITIONS"
        fi
        exec python manage.py run_engine "$@" ;;
    consumer)
        name="${1:-${CONSUMER_NAME:-}}"
        [[ -n $name ]] || { echo "usage: consumer <name>" >&2; exit 64; }
        [[ $# -gt 0 ]] && shift
        exec python manage.py run_consumer "$name" "$@" ;;
    marketdata)
        exec python manage.py run_marketdata_feed "$@" ;;
    clock)
        exec python manage.py run_session_clock "$@" ;;
    market-maker)
        exec python manage.py run_market_maker "$@" ;;
    migrate)
        # Two roles (ECS): DDL as the owner, then (re)create the runtime role the services log in as, with its
        # password; --role is DATABASE_USER, so the role made is the one the task definitions name. One role
        # (docker compose: DATABASE_URL only): the owner is DATABASE_URL, and db_roles leaves a NOLOGIN
        # <db>_app that nothing uses.
        db_roles_args=(--password-env DATABASE_APP_PASSWORD)
        if [[ -n ${DATABASE_OWNER_USER:-} ]]; then
            db_roles_args+=(--role "${DATABASE_USER:?DATABASE_USER names the runtime role}")
        fi
        export MIGRATION_DATABASE_URL="${MIGRATION_DATABASE_URL:-${DATABASE_URL:?no DATABASE_URL}}"
        DJANGO_DATABASE_ROLE=owner python manage.py migrate --noinput
        DJANGO_DATABASE_ROLE=owner python manage.py db_roles "${db_roles_args[@]}"
        exec python manage.py kafka_topics ;;
    manage)
        exec python manage.py "$@" ;;
    *)
        exec "$role" "$@" ;;
esac
