#!/usr/bin/env bash
# `make run`: migrate, create topics, load demo data, then start every process of the Procfile.
# Ctrl-C stops every process it started (honcho forwards the signal and waits).
set -euo pipefail
cd "$(dirname "$0")/.."
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-brokerage.settings.local}"
export PORT="${PORT:-8000}"
export WS_PORT="${WS_PORT:-$((PORT + 1))}"
PY=.venv/bin/python

$PY manage.py migrate --noinput
$PY manage.py kafka_topics
$PY manage.py demo_seed
$PY manage.py collectstatic --noinput -v 0

cat <<MSG

  Brokerage platform is starting.
    REST API (Alpaca v2 + /v1 onboarding): http://127.0.0.1:${PORT}/v2/ and /v1/
    WebSocket streams (daphne):            ws://127.0.0.1:${WS_PORT}/stream
    Admin (staff, 2FA):                    http://127.0.0.1:${PORT}/admin/
    API docs (OpenAPI):                    http://127.0.0.1:${PORT}/v1/docs
    Health:                                http://127.0.0.1:${PORT}/healthz and /readyz
  Ctrl-C stops everything started here (services: make services-stop).

MSG
exec .venv/bin/honcho start -f Procfile
