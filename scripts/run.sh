#!/usr/bin/env bash
# `make run`: migrate, create topics, load demo data, then start every process of the Procfile.
# Ctrl-C stops every process it started (honcho forwards the signal and waits).
set -euo pipefail
cd "$(dirname "$0")/.."
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-brokerage.settings.local}"
export PORT="${PORT:-8000}"
# honcho hands every process type its own $PORT: the Procfile reads the fixed ports from these instead.
export WEB_PORT="${WEB_PORT:-$PORT}"
export WS_PORT="${WS_PORT:-$((WEB_PORT + 1))}"
PY=.venv/bin/python

$PY manage.py migrate --noinput
$PY manage.py kafka_topics
$PY manage.py demo_seed
# Demo customers and the market maker (ACTIVE, funded through the ledger, API keys): idempotent.
$PY manage.py demo_setup
$PY manage.py collectstatic --noinput -v 0

CREDS=.run/demo-credentials.json
KEYS=$($PY -c '
import json, sys
for role, c in json.load(open(sys.argv[1])).items():
    print("    %-13s %-29s APCA-API-KEY-ID=%s  APCA-API-SECRET-KEY=%s" % (role, c["email"], c["key_id"], c["secret_key"]))
' "$CREDS")
cat <<MSG

  Brokerage platform is starting.
    REST API (Alpaca v2 + /v1 onboarding): http://127.0.0.1:${WEB_PORT}/v2/ and /v1/
    WebSocket streams (daphne):            ws://127.0.0.1:${WS_PORT}/stream
    Admin (staff, 2FA):                    http://127.0.0.1:${WEB_PORT}/admin/
    API docs (OpenAPI):                    http://127.0.0.1:${WEB_PORT}/v1/docs
    Health:                                http://127.0.0.1:${WEB_PORT}/healthz and /readyz
  Demo API keys (${CREDS}; the market maker quotes with its own):
${KEYS}
  Try: curl -s -H "APCA-API-KEY-ID: <key>" -H "APCA-API-SECRET-KEY: <secret>" http://127.0.0.1:${WEB_PORT}/v2/account
  Ctrl-C stops everything started here (services: make services-stop).

MSG
exec .venv/bin/honcho start -f Procfile
