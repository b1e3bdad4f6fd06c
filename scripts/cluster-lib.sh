# Shared by the scripts that run several `portico serve` nodes on loopback
# (cluster-test.sh, failover-test.sh); sourced, never run. Node N serves
# HTTP on 127.0.N.1 and the cluster channel beside it, its data in
# $work/dataN and its log in $work/nodeN.log.
#
# The sourcing script sets: portico (the binary), scenario (a word naming
# the work directory), rebuild_after (seconds), may set failback_after
# (seconds, 60 by default), and KEEP=1 to keep the work directory. It may
# set netns[N] to run node N in that network namespace (`ip netns exec`,
# which execs, so pid[N] is still the node's), redefining http and member
# to give the node's addresses there (link-fault-test.sh).

work=$(mktemp -d "/dev/shm/portico-$scenario.XXXXXX")
declare -A pid netns
cleanup() {
  for n in "${!pid[@]}"; do kill -9 "${pid[$n]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

# fail MESSAGE: prints it and the end of each node's log, on stderr (also
# from a command substitution, whose output is captured), and exits 1.
fail() {
  echo "FAIL: $*" >&2
  for n in 1 2 3 4; do [ -f "$work/node$n.log" ] && { echo "--- node $n log (last 25 lines)"; tail -n 25 "$work/node$n.log" | sed 's/\x1b\[[0-9;]*m//g'; }; done >&2
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
  local n=$1 in_ns=(); shift
  [ -n "${netns[$n]:-}" ] && in_ns=(ip netns exec "${netns[$n]}")
  PORTICO_ADMIN_PASSWORD=$password RUST_LOG=${RUST_LOG:-info} RUST_BACKTRACE=0 \
    "${in_ns[@]}" "$portico" serve --data-dir "$work/data$n" --node-name "node$n" --http "$(http "$n")" \
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

# Replicated volumes, ALUA and the ledger (failover-test.sh,
# link-fault-test.sh). The sourcing script sets aluatool and ledger (the
# test initiator's tools), defines iqn N and portal N (node N's target and
# its portal), and fills the array paths with a --path ADDR=IQN per node.
# The volume helpers ask node $via (1 unless the script sets it: a node
# that stays up while others are killed).

# primary VOLUME: the node holding its primary (a number).
primary() { api "${via:-1}" GET "/volumes/$1" | body | json 'd["node"]' | tr -dc 0-9; }
# healthy VOLUME: "yes" once every copy is in sync.
healthy() { api "${via:-1}" GET "/volumes/$1" | body | json '"yes" if d["state"] == "healthy" and all(c["in_sync"] for c in d["copies"]) else d["state"]'; }
wait_healthy() {
  local i
  for i in $(seq 1 $(($2 * 5))); do [ "$(healthy "$1" 2>/dev/null || true)" = yes ] && return 0; sleep 0.2; done
  fail "$1 is not healthy after $2 s: $(api "${via:-1}" GET "/volumes/$1" | body)"
}
# images_equal VOLUME: the images of the primary and of every copy are equal.
images_equal() {
  local nodes
  nodes=$(api "${via:-1}" GET "/volumes/$1" | body | json '" ".join([d["node"]] + [c["node"] for c in d["copies"]])' | tr -dc '0-9 ')
  local files=()
  for n in $nodes; do files+=("$work/data$n/volumes/$1.img"); done
  [ "$(sha256sum "${files[@]}" | awk '{print $1}' | uniq | wc -l)" = 1 ] || fail "the images of $1 on nodes $nodes differ"
  echo "   the images of $1 on nodes $nodes are equal"
}
# one_optimized LUN NODES...: REPORT TARGET PORT GROUPS through each node's
# port is the same, with exactly one group active/optimized; prints it and
# keeps it in rtpg.
one_optimized() {
  local lun=$1 n line first=""
  shift
  for n in "$@"; do
    line=$(timeout 30 "$aluatool" --portal "$(portal "$n")" --target "$(iqn "$n")" --lun "$lun" rtpg)
    [ -z "$first" ] && first=$line
    [ "$line" = "$first" ] || fail "node $n reports '$line', node $1 '$first'"
  done
  [ "$(grep -o active-optimized <<<"$first" | wc -l)" = 1 ] || fail "not exactly one active/optimized group: $first"
  echo "   REPORT TARGET PORT GROUPS through nodes $*: $first"
  rtpg=$first
}
# run_ledger LUN VOLUME SECONDS: starts the ledger in the background.
run_ledger() {
  "$ledger" "${paths[@]}" --lun "$1" --volume "$2" --blocks 2048 --seconds "$3" --timeout 2 >"$work/ledger.txt" 2>&1 &
  ledger_pid=$!
}
# ledger_verdict BOUND_MS: waits for the ledger; fails unless it is intact
# and its longest pause is within the bound; prints its line.
ledger_verdict() {
  wait "$ledger_pid" || fail "the ledger: $(cat "$work/ledger.txt")"
  local line pause
  line=$(cat "$work/ledger.txt")
  sed 's/^/   /' "$work/ledger.txt"
  pause=$(sed -n 's/.*longest pause \([0-9]*\) ms.*/\1/p' <<<"$line")
  [ -n "$pause" ] && [ "$pause" -le "$1" ] || fail "the longest pause, ${pause:-?} ms, is over $1 ms"
  last_pause=$pause
}
# wait_primary_moves VOLUME NOT SECONDS: waits until VOLUME's primary is
# not on node NOT; prints the seconds it took.
wait_primary_moves() {
  local t0 i p
  t0=$(date +%s.%N)
  for i in $(seq 1 $(($3 * 5))); do
    p=$(primary "$1" 2>/dev/null || true)
    [ -n "$p" ] && [ "$p" != "$2" ] && { since "$t0"; return 0; }
    sleep 0.2
  done
  fail "the primary of $1 is still on node $2 after $3 s"
}
