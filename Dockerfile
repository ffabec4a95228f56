# syntax=docker/dockerfile:1
# One image for every process type of the platform; the command selects the process
# (deploy/docker-entrypoint.sh web|ws|relay|worker|beat|engine|consumer <name>|marketdata|migrate|manage ...).
#
# Base pinned by exact tag AND by digest (the multi-arch index digest of python:3.11.14-slim-bookworm as
# published). To move it: `docker buildx imagetools inspect python:3.11.X-slim-bookworm`, update tag and digest
# together, rebuild, run scripts/deploy_checks.sh.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# --- builder: a self-contained venv with the runtime dependencies, plus collected static files ---------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
# Requirements first: the dependency layer is rebuilt only when the pins change.
COPY requirements/base.txt requirements/production.txt requirements/constraints.txt requirements/
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r requirements/production.txt -c requirements/constraints.txt
COPY . .
# The engine: the Python specification's hot modules compiled with mypyc, and the native engine the engine process
# runs (engine_native/, Rust; ENGINE_IMPLEMENTATION=native) built into a wheel and installed into /opt/venv
# (docs/engine.md). Compilers, mypy, maturin and Debian's Rust toolchain (cargo-web/rustc-web: bookworm's current
# Rust) live in this stage only (unpinned apt: they never reach the runtime image, and the base is pinned by digest);
# the crates come from crates.io at the versions of engine_native/Cargo.lock.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev cargo-web rustc-web \
    && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir --target /tmp/mypyc mypy==2.4.1 maturin==1.16.0 \
    && PATH=/tmp/mypyc/bin:$PATH PYTHONPATH=/tmp/mypyc /opt/venv/bin/python scripts/build_engine_native.py --force \
    && /opt/venv/bin/python -c "import engine_native; engine_native.Engine()" \
    && rm -rf /tmp/mypyc .run engine_native/target /root/.cargo
# collectstatic needs no database and no secret beyond a throwaway key used only in this build stage.
RUN DJANGO_SETTINGS_MODULE=brokerage.settings.base DJANGO_SECRET_KEY=collectstatic-only \
    /opt/venv/bin/python manage.py collectstatic --noinput -v 0

# --- runtime: no compilers, no pip cache, non-root -------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=brokerage.settings.production \
    DJANGO_STATIC_ROOT=/app/staticfiles \
    PORT=8000 \
    WS_PORT=8001
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder --chown=root:root /app /app
USER 10001:10001
EXPOSE 8000 8001
# Liveness only (/healthz never touches a dependency); the load balancer routes on /readyz. A Celery worker is
# judged by its liveness file (it consumed its own ping lately); other processes without an HTTP port (relay,
# engine, ...) by their exit status; see deploy/healthcheck.py.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 CMD ["python", "/app/deploy/healthcheck.py"]
# SIGTERM goes straight to the process (the entrypoint execs it), within ECS's stopTimeout.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/deploy/docker-entrypoint.sh"]
CMD ["web"]
