#!/usr/bin/env bash
# Lint the SAM template: cfn-lint, then `sam validate --lint`.
# Any error or warning fails the script (both tools exit non-zero on warnings).
# Runs offline: neither tool needs AWS credentials or network access for this.
set -euo pipefail
cd "$(dirname "$0")/.."

CFN_LINT_VERSION=1.58.0
SAM_CLI_VERSION=1.170.0

# Make sure the pinned tools are in .venv.
if [[ -f scripts/ensure-venv.sh ]]; then
  bash scripts/ensure-venv.sh
elif [[ ! -x .venv/bin/cfn-lint || ! -x .venv/bin/sam ]]; then
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  .venv/bin/pip install --quiet "cfn-lint==${CFN_LINT_VERSION}" "aws-sam-cli==${SAM_CLI_VERSION}"
fi

# Fixed region so results do not depend on the caller's AWS config; sam needs one to translate
# the template (AWS::Region). Nothing is sent to AWS.
export AWS_DEFAULT_REGION=us-east-1
export SAM_CLI_TELEMETRY=0

echo "==> cfn-lint template.yaml"
.venv/bin/cfn-lint template.yaml

echo "==> sam validate --lint --template template.yaml"
.venv/bin/sam validate --lint --template template.yaml

echo "template.yaml: no errors, no warnings"
