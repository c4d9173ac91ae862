#!/usr/bin/env bash
# The benchmark (issue 5), in one command: builds every function under functions/ and the
# hello-world lambda_http baseline (bench/src/bin/hello.rs) with `cargo lambda build --release`
# (binaries and zips, the same release profile), builds the benchmark runner and runs it. It
# prints a table and writes the same figures as JSON to bench/results/latest.json (or --out).
#
# Usage: scripts/bench.sh [--no-build] [--quick]
#                         [--only cold,size,memory,warm,dynamodb,tenants,fhir,search]
#                         [--out PATH] [more runner options: scripts/bench.sh --help]
#   --no-build   run with what the last build left in target/ (skip every cargo step)
#   --only       without cold, size and memory, only the runner is built (no Lambda builds)
#   e.g. scripts/bench.sh --quick --only fhir: FHIR read/create/update/transaction latency
#        (embedded) and items written per resource (moto), with the example Bundles of
#        tests/fixtures/fhir (--fhir-bundle PATH for another)
#   e.g. scripts/bench.sh --quick --only search: FHIR search p50/p99 on a 10,000-resource tenant
#        loaded from the example Bundles (embedded), items read per resource returned on moto,
#        tenant independence with another tenant at 0 and 100,000 resources
#
# The runner is optimized like the functions (the release profile's levels) but not fat-LTO
# linked, to keep its build short; set BENCH_RUNNER_LTO=fat to link it exactly like the
# functions (slower build).
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
only=""
args=()
prev=""
for a in "$@"; do
  case "$a" in
    --no-build) build=0 ;;
    -h|--help) build=0; args+=("$a") ;;
    *) args+=("$a") ;;
  esac
  [[ "$prev" == "--only" ]] && only="$a"
  prev="$a"
done
# The Lambda builds (functions and hello) are for the sections that start or weigh them; the
# others (warm, dynamodb, tenants, fhir, search) call the handlers in process and need the
# runner only.
lambdas=1
if [[ -n "$only" ]] && ! [[ ",$only," =~ ,(cold|size|memory), ]]; then
  lambdas=0
fi

bash scripts/ensure-venv.sh
export PATH="$PWD/.venv/bin:$PATH"
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

# Every function of the workspace: the package name of each functions/*/Cargo.toml.
packages=()
for manifest in functions/*/Cargo.toml; do
  name=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n 1)
  [[ -n "$name" ]] && packages+=(-p "$name")
done

runner_profile=(
  --profile bench-runner
  --config 'profile.bench-runner.inherits="release"'
  --config "profile.bench-runner.lto=${BENCH_RUNNER_LTO:-false}"
  --config 'profile.bench-runner.codegen-units=16'
)

if [[ $build -eq 1 && $lambdas -eq 1 ]]; then
  echo "==> cargo lambda build --release ${packages[*]} (binaries and zips)"
  cargo lambda build --release "${packages[@]}"
  cargo lambda build --release --output-format zip "${packages[@]}"
  echo "==> cargo lambda build --release -p bench --bin hello (the baseline; binary and zip)"
  # Built on its own and without the runner's features, so it links only lambda_http and tokio
  # and does not change the features the functions are built with.
  cargo lambda build --release -p bench --bin hello --no-default-features
  cargo lambda build --release --output-format zip -p bench --bin hello --no-default-features
fi
if [[ $build -eq 1 ]]; then
  echo "==> cargo build -p bench --bin bench (the runner)"
  cargo build -p bench --bin bench "${runner_profile[@]}"
fi

runner="$target_dir/bench-runner/bench"
[[ -x "$runner" ]] || { echo "missing $runner: run scripts/bench.sh without --no-build"; exit 1; }
exec "$runner" --lambda-dir "$target_dir/lambda" "${args[@]}"
