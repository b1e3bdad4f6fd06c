#!/usr/bin/env bash
# Safety under faults nobody scripted (issue 29, CLUSTER.md §4), in the
# spirit of Jepsen: three `portico serve` nodes on loopback, every link of
# every node behind a fault proxy (faultproxy), so that a link can be cut
# both ways or one way, slowed or made lossy without touching the others:
#
#   cluster channel  node N advertises 127.0.N.1:C, listens on 127.0.N.1:C'
#   replication      node N advertises 127.0.N.1:R, listens on 127.0.N.1:R'
#   iSCSI            the ledger dials 127.0.N.1:P, the portal is 127.0.N.1:I
#
# One target group with a target on each node; vol-n, two copies, its
# primary on a node that does not lead, as LUN 0. The ledger test
# initiator writes throughout at queue depth 32 (overlapping writes to the
# same blocks included) with checked reads among them, and a second reader
# stays on one path whatever happens; every read is judged as a
# linearizable register per block (target-engine/src/testkit/history.rs).
#
# First three named scenarios, each a finding of issue 29 as a test:
#
#  A. a partial partition: nothing reaches the primary's cluster port (its
#     own requests to the others still go through). The leader marks it
#     offline and promotes the other copy; the reader on the old primary's
#     port must never read older data than a write the new primary
#     acknowledged (finding 2).
#  B. a crash during a promotion: the primary killed under the ledger, and
#     the promoted node killed as soon as the promotion is committed, then
#     restarted; after healing, nothing acknowledged is lost and both
#     images are equal (finding 5).
#  C. reservations across a failover: REGISTER and RESERVE, the copy's
#     node killed, CLEAR through the primary, the copy back and resynced,
#     the primary killed: through the new primary READ KEYS is empty and
#     there is no reservation (finding 7).
#  D. the primary's own disk fails writes (each node's volumes are on a
#     small tmpfs of their own; the primary's is filled, so its writes to
#     blocks it never wrote end ENOSPC): it stops serving and hands over to
#     the in-sync copy (an audited failover, its copy out of sync), nothing
#     acknowledged is lost; once it has room again its copy is resynced
#     and the images are equal (finding 8).
#
# Then the nemesis: a random schedule of faults, one at a time, for
# NEMESIS_MINUTES (3 by default) from NEMESIS_SEED (fixed by default, so a
# failure is replayed by running again): kill -9 and restart, SIGSTOP and
# SIGCONT, a link (iSCSI, replication, cluster) cut both ways or one way,
# slowed or lossy, and a planned switchover, each for a few seconds; before
# each fault the volume is healthy again. It prints the schedule as it
# runs, then the verdict: acknowledged writes lost, stale reads and
# divergent copies, all of which must be 0, and the pause histogram.
#
# Needs root (the tmpfs mounts of scenario D); unmounts them on exit.
#
# usage: scripts/nemesis-test.sh PORTICO_BINARY
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
portico=${1:?usage: nemesis-test.sh PORTICO_BINARY}
minutes=${NEMESIS_MINUTES:-3}
seed=${NEMESIS_SEED:-29}
cargo build -q -p target-engine --features test-util --example ledger --example faultproxy --example prtool --example aluatool
ledger="$CARGO_TARGET_DIR/debug/examples/ledger"
faultproxy="$CARGO_TARGET_DIR/debug/examples/faultproxy"
prtool="$CARGO_TARGET_DIR/debug/examples/prtool"
aluatool="$CARGO_TARGET_DIR/debug/examples/aluatool"

scenario=nemesis
# No copy is rebuilt elsewhere during this test; failback after 15 s.
rebuild_after=3600
failback_after=15
. "$here/scripts/cluster-lib.sh"
mkdir -p "$work/site"
RANDOM=$seed
[ "$(id -u)" = 0 ] || fail "nemesis-test.sh needs root: each node's volumes are on a tmpfs of their own"
mounted=()
teardown() {
  [ -n "${ledger_pid:-}" ] && kill -9 "$ledger_pid" 2>/dev/null || true
  local n m
  for n in "${!pid[@]}"; do kill -9 "${pid[$n]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for m in "${mounted[@]}"; do umount "$m" 2>/dev/null || true; done
  cleanup
}
trap teardown EXIT
trap 'exit 130' INT TERM
# Each node's volumes on a filesystem of their own, that scenario D fills.
for n in 1 2 3; do
  mkdir -p "$work/data$n/volumes"
  mount -t tmpfs -o size=160m,mode=0700 "portico-nemesis-$n" "$work/data$n/volumes"
  mounted+=("$work/data$n/volumes")
done

cluster_real=$(free_port)
repl_port=$(free_port)
repl_real=$(free_port)
iscsi_port=$(free_port)
iscsi_proxy=$(free_port)
iqn() { echo "iqn.2026-11.local.portico:g.node$1"; }
portal() { echo "127.0.$1.1:$iscsi_port"; }

# The proxies: proxy[N-KIND] is the pid, control[N-KIND] the control port,
# KIND one of i (iSCSI), r (replication), c (cluster).
declare -A proxy control
start_proxy() { # N KIND LISTEN TO
  local key=$1-$2 port
  port=$(free_port)
  "$faultproxy" --listen "$3" --to "$4" --control "127.0.0.1:$port" >>"$work/proxy-$key.log" 2>&1 &
  proxy[$key]=$!
  pid[proxy-$key]=${proxy[$key]}
  control[$key]=$port
}
for n in 1 2 3; do
  start_proxy "$n" c "$(member "$n")" "127.0.$n.1:$cluster_real"
  start_proxy "$n" r "127.0.$n.1:$repl_port" "127.0.$n.1:$repl_real"
  start_proxy "$n" i "127.0.$n.1:$iscsi_proxy" "$(portal "$n")"
done
# fault N KIND COMMAND...: sends a command to that proxy (pass, hold,
# hold up, hold down, delay MS, loss PERCENT).
fault() {
  local answer
  answer=$(python3 - "${control[$1-$2]}" "${*:3}" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall((sys.argv[2] + "\n").encode())
print(s.makefile().readline().strip())
PY
)
  [ "$answer" = ok ] || fail "faultproxy $1-$2: ${*:3} -> $answer"
}
heal_links() { local n k; for n in 1 2 3; do for k in c r i; do fault "$n" "$k" pass; done; done; }
for key in "${!control[@]}"; do
  for i in $(seq 50); do grep -q listening "$work/proxy-$key.log" 2>/dev/null && break; sleep 0.1; done
done

node_args() { # N
  echo --cluster-listen "127.0.$1.1:$cluster_real" --replication-addr "127.0.$1.1:$repl_port" \
    --replication-listen "127.0.$1.1:$repl_real"
}
start_node() { # N [--join ...]
  local n=$1
  shift
  # shellcheck disable=SC2046
  start "$n" $(node_args "$n") "$@"
}
start_node 1
ready 1
login 1
join_token() { api 1 POST /cluster/join-tokens | body | json 'd["token"]'; }
for n in 2 3; do
  PORTICO_JOIN_TOKEN=$(join_token) start_node "$n" --join "https://$(member 1)"
  ready "$n"
  login "$n"
done
for n in 2 3; do wait_state 1 "node$n" online 30 >/dev/null; done
pass "three nodes, every link behind a fault proxy"

# The API through whichever node answers (one may be down or cut off).
declare -A down
api_any() {
  local n out
  for n in 1 2 3; do
    [ -n "${down[$n]:-}" ] && continue
    out=$(timeout 10 curl -s -m 8 -X "$1" -H "Authorization: Bearer ${token[$n]}" -w '\n%{http_code}' \
      ${3:+-H 'Content-Type: application/json' -d "$3"} "http://$(http "$n")/api/v1$2" 2>/dev/null) || continue
    case "$(status <<<"$out")" in 2??|4??) echo "$out"; return 0 ;; esac
  done
  return 1
}
primary() { api_any GET "/volumes/$1" | body | json 'd["node"]' | tr -dc 0-9; }
healthy() { api_any GET "/volumes/$1" | body | json '"yes" if d["state"] == "healthy" and all(c["in_sync"] for c in d["copies"]) else d["state"]'; }
copy_node() { api_any GET "/volumes/$1" | body | json 'd["copies"][0]["node"]' | tr -dc 0-9; }
leader() { api_any GET /cluster | body | json 'd["leader"]'; }

targets=$(for n in 1 2 3; do printf '{"node":"node%s","portals":["%s"]},' "$n" "$(portal "$n")"; done)
out=$(api 1 POST /target-groups "{\"name\":\"g\",\"targets\":[${targets%,}]}")
[ "$(status <<<"$out")" = 201 ] || fail "creating the group: $out"
lead=$(leader)
p=$(printf '%s\n' 1 2 3 | grep -vx "$lead" | head -n 1)
out=$(api 1 POST /volumes "{\"name\":\"vol-n\",\"size\":\"64MiB\",\"replicas\":2,\"node\":\"node$p\"}")
[ "$(status <<<"$out")" = 201 ] || fail "creating vol-n: $out"
out=$(api 1 POST /target-groups/g/luns '{"volume":"vol-n","lun":0}')
[ "$(status <<<"$out")" = 201 ] || fail "attaching vol-n: $out"
wait_healthy vol-n 30
c=$(copy_node vol-n)
echo "   vol-n: primary on node $p, its other copy on node $c, node $lead leads"

paths=()
for n in 1 2 3; do paths+=(--path "127.0.$n.1:$iscsi_proxy=$(iqn "$n")"); done
# ledger_start SECONDS [ARGS...]: the ledger on vol-n in the background.
ledger_start() {
  "$ledger" "${paths[@]}" --lun 0 --volume vol-n --blocks 2048 --seconds "$1" --timeout 2 --depth 32 "${@:2}" \
    >"$work/ledger.txt" 2>&1 &
  ledger_pid=$!
}
ledger_wait() {
  local rc=0
  wait "$ledger_pid" || rc=$?
  sed 's/^/   /' "$work/ledger.txt"
  [ "$rc" = 0 ] || fail "the ledger: $(cat "$work/ledger.txt")"
}
kill_node() { kill -9 "${pid[$1]}" 2>/dev/null || true; wait "${pid[$1]}" 2>/dev/null || true; unset "pid[$1]"; down[$1]=1; }
restart_node() { start_node "$1"; ready "$1"; unset "down[$1]"; }
# images_equal VOLUME: every copy's image the same once healthy.
images_equal() {
  local nodes files=() n
  nodes=$(api_any GET "/volumes/$1" | body | json '" ".join([d["node"]] + [c["node"] for c in d["copies"]])' | tr -dc '0-9 ')
  for n in $nodes; do files+=("$work/data$n/volumes/$1.img"); done
  [ "$(sha256sum "${files[@]}" | awk '{print $1}' | uniq | wc -l)" = 1 ] || return 1
  echo "   the images of $1 on nodes $nodes are equal"
}
wait_moves_from() { # VOLUME NODE SECONDS: prints the seconds it took
  local t0 i q
  t0=$(date +%s.%N)
  for i in $(seq 1 $(($3 * 10))); do
    q=$(primary "$1" 2>/dev/null || true)
    [ -n "$q" ] && [ "$q" != "$2" ] && { since "$t0"; return 0; }
    sleep 0.1
  done
  fail "the primary of $1 is still on node $2 after $3 s"
}
wait_healthy_any() { # VOLUME SECONDS
  local i
  for i in $(seq 1 $(($2 * 5))); do [ "$(healthy "$1" 2>/dev/null || true)" = yes ] && return 0; sleep 0.2; done
  fail "$1 is not healthy after $2 s: $(api_any GET "/volumes/$1" | body)"
}

echo "-- A. a partial partition: nothing reaches node $p's cluster port, its own requests still go out"
ledger_start 25 --reader "127.0.$p.1:$iscsi_proxy=$(iqn "$p")"
sleep 5
fault "$p" c hold up
took=$(wait_moves_from vol-n "$p" 30)
q=$(primary vol-n)
echo "   node $p cut off one way: vol-n's primary is on node $q $took s later"
sleep 6
fault "$p" c pass
ledger_wait
grep -q "none stale" "$work/ledger.txt" || fail "the reader on node $p's port read stale data"
wait_healthy_any vol-n 60
images_equal vol-n || fail "the images of vol-n differ after the partial partition"
pass "a one-way partition of the primary's cluster link: node $q took over, and the reader on node $p's port never read data older than an acknowledged write"

echo "-- B. a crash during a promotion"
p=$(primary vol-n)
c=$(copy_node vol-n)
promoted() { sed 's/\x1b\[[0-9;]*m//g' "$work/node$c.log" | grep -c "promoted from a replica" || true; }
opened_before=$(promoted)
ledger_start 30
sleep 5
kill_node "$p"
for i in $(seq 1 300); do [ "$(primary vol-n 2>/dev/null || true)" = "$c" ] && break; sleep 0.05; done
[ "$(primary vol-n)" = "$c" ] || fail "vol-n was not promoted on node $c"
kill_node "$c"
if [ "$(promoted)" != "$opened_before" ]; then
  echo "   node $p killed; node $c killed as its promotion was committed (it had opened vol-n as primary already)"
else
  echo "   node $p killed; node $c killed as its promotion was committed, before it opened vol-n as primary"
fi
sleep 1
restart_node "$c"
sleep 4
restart_node "$p"
ledger_wait
wait_healthy_any vol-n 90
images_equal vol-n || fail "the images of vol-n differ after a crash during its promotion"
pass "a crash during a promotion: after healing, nothing acknowledged is lost and the images are equal"

echo "-- C. reservations across a failover: CLEAR while the copy is down"
p=$(primary vol-n)
c=$(copy_node vol-n)
pr() { timeout 30 "$prtool" --portal "$(portal "$1")" --target "$(iqn "$1")" "${@:2}"; }
line=$(pr "$p" register c1) || fail "REGISTER through node $p: $line"
line=$(pr "$p" reserve c1 1) || fail "RESERVE through node $p: $line"
echo "   through node $p: key 0xc1 registered, reservation of type 1"
kill_node "$c"
line=$(pr "$p" clear c1) || fail "CLEAR through node $p: $line"
echo "   node $c killed; through node $p: $line"
restart_node "$c"
wait_healthy_any vol-n 90
kill_node "$p"
took=$(wait_moves_from vol-n "$p" 30)
echo "   node $c back and resynced; node $p killed: vol-n's primary is on node $(primary vol-n) $took s later"
keys=$(pr "$c" read-keys) || fail "READ KEYS through node $c: $keys"
res=$(pr "$c" read-reservation) || fail "READ RESERVATION through node $c: $res"
echo "   through node $c: $keys; $res"
grep -q "keys \[\]" <<<"$keys" || fail "the cleared key came back on node $c: $keys"
grep -q "no reservation" <<<"$res" || fail "the cleared reservation came back on node $c: $res"
restart_node "$p"
wait_healthy_any vol-n 90
pass "a CLEAR while the copy was down stays cleared after a failover to that copy"

echo "-- D. the primary's own disk fails writes"
# Every node online again (10 s of steady heartbeats after a restart):
# only a copy on an online node may take over.
all_online() { api_any GET /nodes | body | json '"yes" if all(n["state"] == "online" for n in d) else "no"'; }
for i in $(seq 1 150); do [ "$(all_online 2>/dev/null || true)" = yes ] && break; sleep 0.2; done
[ "$(all_online)" = yes ] || fail "not every node is online: $(api_any GET /nodes | body)"
p=$(primary vol-n)
c=$(copy_node vol-n)
failovers() { api_any GET "/audit?per_page=200" | body | json 'len([r for r in d["entries"] if r["action"] == "volume.failover" and "failed a write" in (r["detail"] or "")])'; }
before=$(failovers)
# The whole volume: most writes land on blocks never written before.
ledger_start 25 --blocks 131072
sleep 4
balloon="$work/data$p/volumes/balloon"
dd if=/dev/zero of="$balloon" bs=1M status=none 2>/dev/null || true
echo "   node $p's volumes filesystem filled: $(df -h --output=avail "$work/data$p/volumes" | tail -n 1 | tr -d ' ') left"
took=$(wait_moves_from vol-n "$p" 30)
echo "   vol-n's primary moved from node $p to node $(primary vol-n) $took s later"
[ "$(primary vol-n)" = "$c" ] || fail "vol-n moved to node $(primary vol-n), not node $c, which kept the in-sync copy"
[ "$(failovers)" -gt "$before" ] || fail "no audited failover names node $p's failed write: $(api_any GET "/audit?per_page=5" | body)"
echo "   audit: volume.failover: $(api_any GET "/audit?per_page=200" | body | json 'next(r["detail"] for r in d["entries"] if r["action"] == "volume.failover")')"
sleep 4
rm -f "$balloon"
ledger_wait
wait_healthy_any vol-n 120
images_equal vol-n || fail "the images of vol-n differ after the primary's disk failed"
pass "the primary's disk failed writes: it stopped serving and handed over to node $c, nothing acknowledged was lost, and its copy was resynced once it had room"

echo "-- the nemesis: ${minutes} minutes of random faults from seed $seed"
total=$((minutes * 60))
ledger_start $((total + 20)) --reader "127.0.$(primary vol-n).1:$iscsi_proxy=$(iqn "$(primary vol-n)")"
t_start=$(date +%s.%N)
elapsed() { python3 -c "import time; print(f'{time.time() - $t_start:6.1f}')"; }
declare -A kinds
faults=0
# The schedule's numbers come from RANDOM in this shell only (a command
# substitution would run in a subshell, which bash reseeds): the same
# seed gives the same schedule.
draws() { local n; picked=(); for n in "$@"; do picked+=($((RANDOM % n))); done; }
while :; do
  now=$(python3 -c "import time; print(int(time.time() - $t_start))")
  [ "$now" -lt $((total - 15)) ] || break
  wait_healthy_any vol-n 120
  # node, duration, link, fault, direction, delay, pause after
  draws 3 8 3 9 2 250 4
  n=$((1 + picked[0]))
  d=$((3 + picked[1]))
  link=(c r i)
  k=${link[picked[2]]}
  at=$(date -u +%T)
  case ${picked[3]} in
    0) what="kill -9 node $n, restarted after $d s"; kind=kill
       kill_node "$n"; sleep "$d"; restart_node "$n" ;;
    1) what="SIGSTOP node $n for $d s"; kind=stop
       kill -STOP "${pid[$n]}"; sleep "$d"; kill -CONT "${pid[$n]}" ;;
    2|3) what="node $n's $k link cut both ways for $d s"; kind=cut
       fault "$n" "$k" hold; sleep "$d"; fault "$n" "$k" pass ;;
    4|5) dir=(up down); dir=${dir[picked[4]]}
       what="node $n's $k link cut one way ($dir: $( [ "$dir" = up ] && echo "nothing reaches it" || echo "nothing comes back")) for $d s"; kind=one-way
       fault "$n" "$k" hold "$dir"; sleep "$d"; fault "$n" "$k" pass ;;
    6) ms=$((50 + picked[5]))
       what="node $n's $k link slowed by $ms ms each way for $d s"; kind=slow
       fault "$n" "$k" delay "$ms"; sleep "$d"; fault "$n" "$k" pass ;;
    7) what="node $n's $k link losing 20% of its segments for $d s"; kind=lossy
       fault "$n" "$k" loss 20; sleep "$d"; fault "$n" "$k" pass ;;
    8) to=$(copy_node vol-n)
       out=$(api_any POST /volumes/vol-n/primary "{\"node\":\"node$to\"}" || echo "no answer")
       what="a planned switchover of vol-n to node $to: $(status <<<"$out")"; kind=switchover ;;
  esac
  faults=$((faults + 1))
  kinds[$kind]=$((${kinds[$kind]:-0} + 1))
  echo "   t=$(elapsed) s (from $at UTC)  $what"
  sleep $((2 + picked[6]))
done
heal_links
for n in 1 2 3; do [ -n "${down[$n]:-}" ] && restart_node "$n"; done
ledger_rc=0
wait "$ledger_pid" || ledger_rc=$?
sed 's/^/   /' "$work/ledger.txt"
wait_healthy_any vol-n 120
divergent=0
images_equal vol-n || divergent=1
verdict=$(sed -n 's/^ledger: verdict: //p' "$work/ledger.txt")
lost=$(sed -n 's/^\([0-9]*\) acknowledged writes lost.*/\1/p' <<<"$verdict")
stale=$(sed -n 's/.*lost, \([0-9]*\) stale reads.*/\1/p' <<<"$verdict")
summary=$(for k in "${!kinds[@]}"; do printf '%s %s, ' "${kinds[$k]}" "$k"; done)
echo "   pauses between acknowledged writes: $(sed -n 's/^ledger: pauses: //p' "$work/ledger.txt")"
echo "   the longest, and when they ended: $(sed -n 's/^ledger: pauses of a second or more[^:]*: //p' "$work/ledger.txt")"
echo "nemesis: seed $seed, $faults faults in $(elapsed | tr -d ' ') s (${summary%, }); acknowledged writes lost: ${lost:-?}, stale reads: ${stale:-?}, divergent copies: $divergent"
[ "$ledger_rc" = 0 ] && [ "$lost" = 0 ] && [ "$stale" = 0 ] || fail "the ledger's verdict: $verdict"
[ "$divergent" = 0 ] || fail "the copies of vol-n differ after the nemesis"
echo "nemesis: all checks passed"
