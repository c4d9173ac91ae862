#!/usr/bin/env bash
# Installs the pinned Python tools of scripts/requirements.txt into .venv (cfn-lint, SAM CLI,
# cargo-lambda with its zig, moto_server). Idempotent: does nothing when .venv already matches.
set -euo pipefail
cd "$(dirname "$0")/.."

req=scripts/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
echo "==> installing Python tools into .venv ($req)"
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/pip install --quiet --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
