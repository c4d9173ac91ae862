#!/usr/bin/env bash
# The local server: every route on http://127.0.0.1:8080 with the embedded backend in .local/.
#   scripts/dev.sh                       serve (LOCAL_PORT, LOCAL_DATA_DIR and the template's
#                                        variables such as SITE_MODE are read from the environment)
#   scripts/dev.sh token --user alice --groups marketing [--tenant t1] [--access]
#                                        print a token signed by the local key
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet --locked -p local-server -- "$@"
