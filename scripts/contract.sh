#!/usr/bin/env bash
# The API contract check: openapi.yaml describes the document, sites and groups APIs, and the
# local server answers as it says.
#
#   1. lints openapi.yaml (openapi-spec-validator);
#   2. starts the local server (built as scripts/dev.sh runs it) on a free loopback port
#      with a fresh data folder, once per site mode (automatic, then defined), seeds a document,
#      a group with a user and (defined mode) a site with a grant, so that the spec's path
#      examples name real resources;
#   3. runs schemathesis against it as an administrator (Admins: ADMIN on every site) and, in
#      automatic mode, as a caller who may only read one site, with the checks
#      not_a_server_error, status_code_conformance, content_type_conformance,
#      response_schema_conformance and ignored_auth, a fixed seed and a bounded number of cases
#      per operation;
#   4. prints one summary line; exits non-zero when the spec is invalid or any check failed.
#
# Python tools come from .venv (scripts/ensure-venv.sh installs them from
# scripts/requirements.txt). Nothing leaves 127.0.0.1.
#
# Environment: CONTRACT_MAX_EXAMPLES (cases per operation and phase for the administrator's
# runs, default 25), CONTRACT_READER_EXAMPLES (for the reader's run, default 10), CONTRACT_SEED
# (default 20260101), CONTRACT_MODES (default "automatic defined").
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
max_examples=${CONTRACT_MAX_EXAMPLES:-25}
reader_examples=${CONTRACT_READER_EXAMPLES:-10}
seed=${CONTRACT_SEED:-20260101}
modes=${CONTRACT_MODES:-automatic defined}

# What the spec's path parameter examples name (openapi.yaml, components/parameters).
# The DELETE operations' examples name resources of their own, so that the examples phase does
# not delete what the other operations' examples read.
seed_document=0b7f6c1e-3c1d-4c55-9a9f-6a3d0c6f2b11
seed_document_deleted=0b7f6c1e-3c1d-4c55-9a9f-6a3d0c6f2b12
seed_group=contract-group
seed_user=contract-user
seed_site=contract-site
seed_disposable=contract-disposable

bash scripts/ensure-venv.sh

echo "==> lint: openapi-spec-validator openapi.yaml"
.venv/bin/openapi-spec-validator openapi.yaml

target=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target/debug/local-server"
# Built exactly as scripts/dev.sh runs it (`cargo run --locked -p local-server`): the current
# code, and after scripts/test.sh the local server starts without a rebuild. (The workspace's
# test build resolves other features and is a different build of the same binary.)
echo "==> cargo build --locked -p local-server"
cargo build --locked -p local-server

# Every server started here, and its data folder, is stopped and removed on exit.
pids=()
dirs=()
cleanup() {
  local pid dir
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  for dir in "${dirs[@]}"; do
    rm -rf "$dir"
  done
}
trap cleanup EXIT

# start_server MODE: starts the server in SITE_MODE=MODE on a free port (--port 0: the server
# takes one and records it in <data>/server.json); sets port, data, log (stderr; the metrics lines
# of stdout go to <data>/metrics.jsonl).
start_server() {
  local mode=$1 pid i
  data=$(mktemp -d)
  dirs+=("$data")
  log="$data/server.log"
  port=
  SITE_MODE=$mode LOCAL_DATA_DIR="$data" LOG_LEVEL=warn \
    "$bin" --port 0 >"$data/metrics.jsonl" 2>"$log" &
  pid=$!
  pids+=("$pid")
  for i in $(seq 1 300); do
    if [[ -z "$port" && -s "$data/server.json" ]]; then
      port=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["port"])' \
        "$data/server.json" 2>/dev/null || true)
    fi
    if [[ -n "$port" ]] &&
      curl -sf --max-time 5 -o /dev/null "http://127.0.0.1:$port/.well-known/jwks.json"; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "local-server ($mode mode) exited at start:" >&2
      cat "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "local-server ($mode mode) did not answer within 30 s:" >&2
  cat "$log" >&2
  return 1
}

# call METHOD PATH BODY EXPECTED_STATUS: one seeding request, which must answer EXPECTED_STATUS.
call() {
  local method=$1 path=$2 body=$3 want=$4 out status
  out=$(mktemp)
  status=$(curl -s --max-time 30 -o "$out" -w '%{http_code}' -X "$method" "http://127.0.0.1:$port$path" \
    -H "Authorization: Bearer $token" -H 'Content-Type: application/json' --data "$body")
  if [[ "$status" != "$want" ]]; then
    echo "seeding: $method $path answered $status, not $want: $(cat "$out")" >&2
    rm -f "$out"
    return 1
  fi
  rm -f "$out"
}

seed_data() {
  local mode=$1
  local tags='[{"key": "category", "value": "contract"}, {"key": "players", "values": ["1", "2"]}, {"key": "obsolete"}]'
  call POST "/documents?siteId=default" \
    "{\"documentId\": \"$seed_document\", \"path\": \"contract/seed.txt\", \"content\": \"seed\", \"tags\": $tags, \"metadata\": [{\"key\": \"info\", \"value\": \"x\"}]}" 201
  call POST "/documents?siteId=default" \
    "{\"documentId\": \"$seed_document_deleted\", \"path\": \"contract/upload-later.bin\"}" 201
  call POST /groups "{\"group\": {\"name\": \"$seed_group\", \"description\": \"contract check\"}}" 201
  call POST /groups "{\"group\": {\"name\": \"$seed_disposable\"}}" 201
  call POST "/groups/$seed_group/users" "{\"user\": {\"username\": \"$seed_user\"}}" 201
  if [[ "$mode" == defined ]]; then
    call POST /sites "{\"site\": {\"id\": \"$seed_site\", \"title\": \"Contract\"}}" 201
    call POST /sites "{\"site\": {\"id\": \"$seed_disposable\"}}" 201
    call PUT "/sites/$seed_site/groups/$seed_group/permissions" '{"permissions": ["READ", "WRITE"]}' 200
  fi
}

checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,ignored_auth
summary=()
failed=0

# fuzz LABEL TOKEN WHO MAX_EXAMPLES: one schemathesis run against the server on $port.
fuzz() {
  local label=$1 token=$2 who=$3 n=$4 report events status cases checked
  report="$data/schemathesis-${label//[^A-Za-z0-9_]/-}.txt"
  events="$data/events-${label//[^A-Za-z0-9_]/-}.ndjson"
  echo "==> [$label] schemathesis run openapi.yaml --url http://127.0.0.1:$port" \
    "-H 'Authorization: Bearer <$who token>' --checks $checks --max-examples $n --seed $seed" \
    "--generation-database none --continue-on-failure --suppress-health-check too_slow" \
    "--request-timeout 10 --no-color --report ndjson --report-ndjson-path <data>/events.ndjson"
  status=0
  # In the data folder: schemathesis keeps .hypothesis/ and .schemathesis/ in its working
  # directory, which must not be the work tree.
  (cd "$data" && "$root/.venv/bin/schemathesis" run "$root/openapi.yaml" \
    --url "http://127.0.0.1:$port" \
    -H "Authorization: Bearer $token" \
    --checks "$checks" \
    --max-examples "$n" \
    --seed "$seed" \
    --generation-database none \
    --continue-on-failure \
    --suppress-health-check too_slow \
    --request-timeout 10 \
    --no-color \
    --report ndjson --report-ndjson-path "$events") | tee "$report" || status=$?
  cases=$(grep -Eo '[0-9]+ generated' "$report" | tail -1 | grep -Eo '[0-9]+' || echo '?')
  checked=$(tally "$events" || echo 'no event log')
  echo "==> [$label] $checked"
  if [[ "$status" -eq 0 ]]; then
    summary+=("$label: $cases cases passed")
  else
    failed=1
    summary+=("$label: FAILED (exit $status, $cases cases)")
    echo "--- local-server log ($label) ---" >&2
    tail -n 50 "$log" >&2 || true
  fi
}

# tally EVENTS: the checks run and the statuses answered, from schemathesis' event log.
tally() {
  python3 - "$1" <<'PY'
import collections, json, sys
checks, statuses = collections.Counter(), collections.Counter()
with open(sys.argv[1]) as f:
    for line in f:
        event = json.loads(line).get("ScenarioFinished")
        recorder = (event or {}).get("recorder") or {}
        for results in (recorder.get("checks") or {}).values():
            for c in results:
                checks[(c["name"], c["status"])] += 1
        for interaction in (recorder.get("interactions") or {}).values():
            if interaction.get("response"):
                statuses[interaction["response"]["status_code"]] += 1
names = sorted({name for name, _ in checks})
print("checks: " + ", ".join(
    f"{n} {checks[(n, 'success')]} passed"
    + (f" {checks[(n, 'failure')]} FAILED" if checks[(n, "failure")] else "")
    for n in names)
    + "; responses: " + " ".join(f"{s}x{c}" for s, c in sorted(statuses.items())))
PY
}

# mint ARGS...: a token of the local key of the running server's data folder.
mint() {
  SITE_MODE=$mode LOCAL_DATA_DIR="$data" LOCAL_PORT="$port" "$bin" --port "$port" token "$@"
}

root=$PWD
for mode in $modes; do
  echo "==> local-server, SITE_MODE=$mode"
  start_server "$mode"
  admin=$(mint --user contract --groups Admins)
  token=$admin
  seed_data "$mode"
  fuzz "$mode, Admins" "$admin" Admins "$max_examples"
  if [[ "$mode" == automatic ]]; then
    # A caller who may only read one site: the 403s and the single-site resolution.
    reader=$(mint --user contract-reader --groups "${seed_group}_read")
    fuzz "$mode, ${seed_group}_read" "$reader" "${seed_group}_read" "$reader_examples"
  fi
done

elapsed=$(($(date +%s) - started))
result=$([[ $failed -eq 0 ]] && echo passed || echo FAILED)
echo "contract: $result: openapi.yaml valid; $(IFS=';'; echo "${summary[*]}" | sed 's/;/; /g'); ${elapsed}s"
exit "$failed"
