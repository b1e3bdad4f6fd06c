#!/usr/bin/env bash
# Floods a release `portico serve` the way an attacker on its network would
# and prints what each flood cost it: resident memory before, at the peak
# during and after, and how long a well-behaved login takes afterwards.
# The node has one volume in a target group without CHAP, built through the
# REST API. Scenarios and their meaning: target-engine/examples/flood.rs.
#
# usage: scripts/flood.sh [SECONDS_PER_SCENARIO] [SCENARIO...]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/env.sh"
seconds=${1:-20}
shift || true

cargo build --release -q -p portico-server
cargo build --release -q -p target-engine --features test-util --example flood
portico="$CARGO_TARGET_DIR/release/portico"
flood="$CARGO_TARGET_DIR/release/examples/flood"

work=$(mktemp -d /dev/shm/portico-flood.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(free_port)
iscsi=$(free_port)
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

PORTICO_ADMIN_PASSWORD=flood-admin-pass "$portico" serve --http "127.0.0.1:$http" --data-dir "$work/node" \
  --node-name flood-node >"$work/node.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$http/api/v1/openapi.json" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/node.log"; exit 1; }
  sleep 0.2
done
api() { curl -fsS -b "$work/jar" -c "$work/jar" -X "$1" -H 'content-type: application/json' \
  -H "origin: http://127.0.0.1:$http" ${3:+-d "$3"} "http://127.0.0.1:$http/api/v1$2" >/dev/null; }
api POST /login '{"username":"admin","password":"flood-admin-pass"}'
api POST /volumes '{"name":"flood","size":"64MiB"}'
api POST /target-groups "{\"name\":\"flood\",\"targets\":[{\"node\":\"flood-node\",\"portals\":[\"127.0.0.1:$iscsi\"]}]}"
api POST /target-groups/flood/luns '{"volume":"flood","lun":0}'

"$flood" --portal "127.0.0.1:$iscsi" --pid "$pid" --target iqn.2026-11.local.portico:flood.flood-node \
  --seconds "$seconds" "$@"
echo "node log, warnings and refusals:"
grep -E "WARN|refused|not reading|closing" "$work/node.log" | sed -E 's/\x1b\[[0-9;]*m//g' | sort | uniq -c | sort -rn | head -n 12
