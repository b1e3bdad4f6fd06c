# Shared by the scripts that run several `portico serve` nodes on loopback
# (cluster-test.sh, failover-test.sh); sourced, never run. Node N serves
# HTTP on 127.0.N.1 and the cluster channel beside it, its data in
# $work/dataN and its log in $work/nodeN.log.
#
# The sourcing script sets: portico (the binary), scenario (a word naming
# the work directory), rebuild_after (seconds), may set failback_after
# (seconds, 60 by default), and KEEP=1 to keep the work directory.

work=$(mktemp -d "/dev/shm/portico-$scenario.XXXXXX")
declare -A pid
cleanup() {
  for n in "${!pid[@]}"; do kill -9 "${pid[$n]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  for n in 1 2 3 4; do [ -f "$work/node$n.log" ] && { echo "--- node $n log (last 25 lines)"; tail -n 25 "$work/node$n.log"; }; done
  exit 1
}
pass() { echo "ok: $*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port=$(free_port)
cluster_port=$(free_port)
password=$scenario-test-pass1
http() { echo "127.0.$1.1:$http_port"; }
member() { echo "127.0.$1.1:$cluster_port"; }

# start N [ARGS...]: starts node N in the background.
start() {
  local n=$1; shift
  PORTICO_ADMIN_PASSWORD=$password RUST_LOG=${RUST_LOG:-info} RUST_BACKTRACE=0 \
    "$portico" serve --data-dir "$work/data$n" --node-name "node$n" --http "$(http "$n")" \
    --cluster-addr "${CLUSTER_ADDR:-$(member "$n")}" --rebuild-after "$rebuild_after" \
    --failback-after "${failback_after:-60}" --site-root "$work/site" "$@" \
    >>"$work/node$n.log" 2>&1 &
  pid[$n]=$!
}

# ready N: waits until node N answers HTTP (its cluster has a leader by then).
ready() {
  local n=$1 i
  for i in $(seq 1 300); do
    if curl -s -o /dev/null "http://$(http "$n")/api/v1/me"; then return 0; fi
    kill -0 "${pid[$n]}" 2>/dev/null || fail "node $n exited while starting"
    sleep 0.2
  done
  fail "node $n did not answer within 60 s"
}

# api N METHOD PATH [JSON]: a call with node N's API token; prints the body.
api() {
  local n=$1 method=$2 path=$3 body=${4:-}
  local args=(-s -X "$method" -H "Authorization: Bearer ${token[$n]}" -w '\n%{http_code}')
  [ -n "$body" ] && args+=(-H 'Content-Type: application/json' -d "$body")
  curl "${args[@]}" "http://$(http "$n")/api/v1$path"
}
body() { sed '$d'; }
status() { tail -n 1; }

declare -A token
# login N: logs in as admin on node N and makes an API token there.
login() {
  local n=$1
  local jar="$work/jar$n"
  curl -s -c "$jar" -o /dev/null -H 'Content-Type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"$password\"}" "http://$(http "$n")/api/v1/login"
  token[$n]=$(curl -s -b "$jar" -H 'Content-Type: application/json' -d '{"name":"cluster-test"}' \
    "http://$(http "$n")/api/v1/tokens" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
}

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
since() { python3 -c "import time; print(f'{time.time() - $1:.1f}')"; }
# state_of N NAME: node NAME's state as node N lists it.
state_of() { api "$1" GET /nodes | body | json "next(x['state'] for x in d if x['name'] == '$2')"; }
# wait_state N NAME STATE SECONDS: polls until NAME is STATE on N; prints the seconds it took.
wait_state() {
  local n=$1 name=$2 want=$3 limit=$4 t0 i
  t0=$(date +%s.%N)
  for i in $(seq 1 $((limit * 5))); do
    [ "$(state_of "$n" "$name" 2>/dev/null || true)" = "$want" ] && { python3 -c "import time; print(f'{time.time() - $t0:.1f}')"; return 0; }
    sleep 0.2
  done
  fail "$name is not $want on node $n after $limit s"
}

