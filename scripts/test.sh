#!/usr/bin/env bash
# The whole test suite, on a fresh clone: installs what it needs (Python tools into .venv),
# runs every Rust test (and the release checks again without debug assertions), lints the SAM
# template with cfn-lint and `sam validate --lint`, checks the API contract (scripts/contract.sh:
# openapi.yaml lints, and schemathesis finds the local server answering as it says), and builds
# the five Lambda functions with `cargo lambda build --release`.
# Usage: scripts/test.sh [--quick]   (--quick skips the release build)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1

bash scripts/ensure-venv.sh
export PATH="$PWD/.venv/bin:$PATH"

log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "==> cargo test --workspace"
set +e
cargo test --workspace --all-targets --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# Scope checks must hold where debug assertions are compiled out, as in the Lambda binaries.
echo "==> release checks (tests/release, profile release-checks: debug assertions off)"
RELEASE_CHECKS=1 cargo test --profile release-checks --locked -p release-checks 2>&1 | tee -a "$log"
release_status=${PIPESTATUS[0]}
[[ $status -eq 0 ]] && status=$release_status
set -e

echo "==> lint template.yaml"
bash scripts/lint-template.sh

echo "==> API contract (openapi.yaml: lint, then schemathesis against the local server)"
contract_status=0
bash scripts/contract.sh || contract_status=$?

if [[ $quick -eq 0 ]]; then
  echo "==> cargo lambda build --release (documents, sites, groups, fhir, fhir-search)"
  cargo lambda build --release --locked -p documents -p sites -p groups -p fhir -p fhir-search
  target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  for f in documents sites groups fhir fhir-search; do
    test -x "$target_dir/lambda/$f/bootstrap" || { echo "missing $target_dir/lambda/$f/bootstrap"; exit 1; }
  done
fi

passed=$(grep -Eo 'test result: [A-Za-z]+\. [0-9]+ passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
if [[ $status -ne 0 && $failed -eq 0 ]]; then
  echo "cargo test failed to build or run (exit $status)"
  exit "$status"
fi
if [[ $contract_status -ne 0 ]]; then
  echo "summary: $passed passed, $failed failed; the API contract check failed (exit $contract_status)"
  [[ $status -eq 0 ]] && status=$contract_status
  exit "$status"
fi
echo "summary: $passed passed, $failed failed; API contract check passed"
exit "$status"
