#!/usr/bin/env bash
# Starts a throw-away node (fresh data directory, free port) and runs the
# Playwright tests in end2end/ against it with Debian's Chromium.
#
# usage: PORTICO_BIN=path/to/portico scripts/test-e2e.sh [playwright test arguments]
# (for instance tests/failover.spec.ts to run that file only)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
portico=${PORTICO_BIN:?set PORTICO_BIN to the portico binary}

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

export PORTICO_ADMIN_PASSWORD="e2e-admin-$RANDOM$RANDOM"
export PORTICO_NODE_NAME=e2e-node
export PORTICO_ISCSI_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# A cluster address, so that a test can join a second node to this one.
export PORTICO_CLUSTER_ADDR="127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
# And a replication address on a free port, for a volume with two copies.
replication_addr="127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
export PORTICO_BIN="$portico" PORTICO_SITE_ROOT="$here/target/site"
"$portico" serve --http "127.0.0.1:$port" --data-dir "$work/data" --node-name "$PORTICO_NODE_NAME" \
  --cluster-addr "$PORTICO_CLUSTER_ADDR" --replication-addr "$replication_addr" \
  --site-root "$here/target/site" >"$work/node.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/api/v1/openapi.json" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/node.log"; echo "e2e: the node exited" >&2; exit 1; }
  sleep 0.2
done

status=0
(cd "$here/end2end" && PORTICO_URL="http://127.0.0.1:$port" npx playwright test "$@") || status=$?
if [ $status -ne 0 ]; then
  echo "---- node log ----"; tail -n 50 "$work/node.log"
fi
exit $status
