#!/usr/bin/env bash
# Deployment checks, offline and without AWS credentials (part of `make test` via `make deploy-checks`):
#   1. a tooling venv (.run/deploy-venv) from requirements/deploy.txt, rebuilt only when that file changes;
#   2. hadolint on the Dockerfile; shellcheck on the entrypoint (when installed);
#   3. `cdk synth` equivalent: python deploy/ecs/app.py -> deploy/ecs/cdk.out (CDK CLI from npm not needed);
#   4. cfn-lint and checkov over the synthesized templates: zero findings, except the reviewed allow-list
#      deploy/ecs/checkov-allowlist.json (per resource, one reason per check; applied as template Metadata).
# Prints the time of each step. Exit status non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${DEPLOY_VENV:-$ROOT/.run/deploy-venv}
PYTHON=${PYTHON:-python3.11}
OUT=$ROOT/deploy/ecs/cdk.out
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION=1 CDK_OUTDIR=$OUT

step_start=0
step() { step_start=$(date +%s.%N); printf '== %s\n' "$1"; }
step_done() { printf '   %s: %.1f s\n' "$1" "$(echo "$(date +%s.%N) - $step_start" | bc)"; }
total_start=$(date +%s.%N)

step "tooling venv"
stamp="$VENV/.installed-$(sha256sum requirements/deploy.txt | cut -c1-16)"
if [[ ! -f $stamp ]]; then
    PYTHON=$PYTHON scripts/pyinstall.sh "$VENV" -r requirements/deploy.txt
    rm -f "$VENV"/.installed-* && touch "$stamp"
fi
step_done venv

step "hadolint Dockerfile"
"$VENV/bin/hadolint" Dockerfile
if command -v shellcheck >/dev/null; then shellcheck deploy/docker-entrypoint.sh scripts/deploy_checks.sh; fi
step_done hadolint

step "cdk synth (python deploy/ecs/app.py)"
rm -rf "$OUT"
# CDK prints its own template-validation report; any warning in it is a finding.
synth_log=$(cd deploy/ecs && "$VENV/bin/python" app.py 2>&1) || { echo "$synth_log"; exit 1; }
if grep -qiE '^(WARNING|ERROR) ' <<<"$synth_log"; then echo "$synth_log"; exit 1; fi
ls "$OUT"/*.template.json
step_done synth

step "cfn-lint"
"$VENV/bin/cfn-lint" --config-file deploy/ecs/cfnlintrc.yaml -- "$OUT"/*.template.json
step_done cfn-lint

step "checkov"
"$VENV/bin/checkov" --quiet --compact --framework cloudformation --directory "$OUT" \
    --skip-download
step_done checkov

printf '== deploy checks passed in %.1f s\n' "$(echo "$(date +%s.%N) - $total_start" | bc)"
