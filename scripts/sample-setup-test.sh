#!/usr/bin/env bash
# The sample setup of shared/seed/about-block-storage.txt, end to end: two
# volumes on redundant storage, attached as LUNs 0 and 1 to a group of two
# targets on nodes 1 and 2; each target has two portals, one per iSCSI
# interface, eth0 cabled to switch A and eth1 to switch B: four endpoints.
# A third node holds no target and no copy; it leads the cluster and votes,
# so that a majority survives the loss of node 1 or 2.
#
# Each node runs in its own network namespace ssN; the switches are bridges
# in the root namespace, where the test initiator (the ledger, aluatool)
# lives, attached to all of them:
#
#   switch A  bridge ssA  10.71.0.0/24  node N's eth0 10.71.0.1N  (iSCSI)
#   switch B  bridge ssB  10.72.0.0/24  node N's eth1 10.72.0.1N  (iSCSI)
#   cluster   bridge ssC  10.73.0.0/24  node N's clus0 10.73.0.1N (cluster,
#                                       management, replication)
#
# A switch fails when every node's port on it goes down (`ip link set ssNa
# down` on the root side): the nodes' ends lose their carrier and what
# crosses the bridge is dropped, as by a dead switch.
#
# The ledger opens the four paths of each LUN and chooses among them as
# Linux dm-multipath does with `path_grouping_policy group_by_prio`, the
# `alua` prioritizer and the TUR checker (`--policy group-by-prio`, a path
# checked every 2 s, a command unanswered after 2 s fails its path), and
# writes throughout every scenario; both LUNs at once.
#
#  1. switch A fails for 10 s: no volume moves, I/O goes on through switch
#     B on the same active/optimized target (node 1), with a pause no longer
#     than the initiator's deadline and one checker round; switch A back,
#     its path carries I/O again;
#  2. switch B fails for 10 s: the same the other way;
#  3. node 1, the active/optimized target's node, is killed (kill -9):
#     node 2's target becomes active/optimized on both switches, pause
#     <= 10 s, nothing lost;
#  4. switch A fails while node 1 is down: I/O goes on through the one path
#     left (node 2 over switch B);
#  5. node 1 returns: its copies are resynced and, after the hold time
#     (15 s here), the active/optimized paths return to it once (failback),
#     nothing lost.
#
# Every scenario is checked by the ledger (no acknowledged write lost, no
# stale read), by the volumes' move timeline, and by the paths the ledger
# used before, during and after the fault; the script prints one line per
# scenario. Before the scenarios, SendTargets through each of the four
# portals lists both targets with both of their portals, and REPORT TARGET
# PORT GROUPS is the same through all four endpoints. Needs root (network
# namespaces, bridges, veth pairs, tmpfs mounts); removes them on exit.
#
# usage: scripts/sample-setup-test.sh PORTICO_BINARY
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
portico=${1:?usage: sample-setup-test.sh PORTICO_BINARY}
portico=$(realpath "$portico")

scenario=sample-setup
# No copy is rebuilt elsewhere during this test; a preferred node gets its
# volumes back after 15 s online, in sync and reachable.
rebuild_after=3600
failback_after=15
. "$here/scripts/cluster-lib.sh"
# Node 3 leads and stays up: the volume helpers ask it.
via=3
# The initiator's deadline for a command and its path checker's interval.
deadline=2
check_every=2
switch_pause_ms=$(((deadline + check_every) * 1000))
node_pause_ms=10000

net_made=""
mounted=()
ledger_pids=()
teardown() {
  local p n k m
  for p in "${ledger_pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for n in "${!pid[@]}"; do kill -9 "${pid[$n]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for m in "${mounted[@]}"; do umount "$m" 2>/dev/null || true; done
  if [ -n "$net_made" ]; then
    for n in 1 2 3; do
      ip netns del "ss$n" 2>/dev/null || true
      for k in a b c; do ip link del "ss$n$k" 2>/dev/null || true; done
    done
    for k in A B C; do ip link del "ss$k" 2>/dev/null || true; done
  fi
  cleanup
}
trap teardown EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || fail "sample-setup-test.sh needs root: it makes network namespaces, bridges and veth pairs"
for n in 1 2 3; do
  ip netns list | grep -qw "ss$n" && fail "the network namespace ss$n exists already (a run that did not clean up? ip netns del ss$n)"
  for k in a b c; do ip link show "ss$n$k" >/dev/null 2>&1 && fail "the interface ss$n$k exists already (ip link del ss$n$k)"; done
done
for k in A B C; do ip link show "ss$k" >/dev/null 2>&1 && fail "the bridge ss$k exists already (ip link del ss$k)"; done
ip route show | grep -q '10\.7[123]\.' && fail "the root namespace routes 10.71-73.x.x already: $(ip route show | grep '10\.7[123]\.')"

cargo build -q -p target-engine --features test-util --example aluatool --example ledger
aluatool="$CARGO_TARGET_DIR/debug/examples/aluatool"
ledger="$CARGO_TARGET_DIR/debug/examples/ledger"
mkdir -p "$work/site"

# The network: three switches (bridges), each node cabled to every one.
net_made=1
for k in A:71 B:72 C:73; do
  IFS=: read -r sw net <<<"$k"
  ip link add "ss$sw" type bridge
  ip addr add "10.$net.0.1/24" dev "ss$sw"
  ip link set "ss$sw" up
done
for n in 1 2 3; do
  ip netns add "ss$n"
  netns[$n]=ss$n
  ip -n "ss$n" link set lo up
  for link in a:71:eth0 b:72:eth1 c:73:clus0; do
    IFS=: read -r k net dev <<<"$link"
    ip link add "ss$n$k" type veth peer name "$dev" netns "ss$n"
    ip link set "ss$n$k" master "ss${k^^}"
    ip link set "ss$n$k" up
    ip -n "ss$n" addr add "10.$net.0.1$n/24" dev "$dev"
    ip -n "ss$n" link set "$dev" up
  done
done
# Each node's volumes on a filesystem of its own: node 3's is too small to
# be chosen for a copy (placement takes the node with the most room), so
# both volumes keep their copies on nodes 1 and 2, as in the seed's figure.
for n in 1 2 3; do
  mkdir -p "$work/data$n/volumes"
  size=256m
  [ "$n" = 3 ] && size=16m
  mount -t tmpfs -o "size=$size,mode=0700" "portico-sample-$n" "$work/data$n/volumes"
  mounted+=("$work/data$n/volumes")
done

http() { echo "10.73.0.1$1:$http_port"; }
member() { echo "10.73.0.1$1:$cluster_port"; }
replication() { echo "10.73.0.1$1:3270"; }
# portal N SWITCH: node N's portal on switch A or B.
portal() { case "$2" in A) echo "10.71.0.1$1:3260" ;; B) echo "10.72.0.1$1:3260" ;; esac; }
iqn() { echo "iqn.2026-11.local.portico:sample.node$1"; }
# name PORTAL: how the lines below name an endpoint (node1/A); words pass.
names() { sed -E 's/10\.71\.0\.1([0-9]):3260/node\1\/A/g; s/10\.72\.0\.1([0-9]):3260/node\1\/B/g'; }
endpoints=("1 A" "1 B" "2 A" "2 B")
paths=()
for e in "${endpoints[@]}"; do
  read -r n sw <<<"$e"
  paths+=(--path "$(portal "$n" "$sw")=$(iqn "$n")")
done
reach() { timeout 2 bash -c "exec 3<>/dev/tcp/${1%:*}/${1##*:}" 2>/dev/null; }
# switch_down A|B, switch_up A|B: every node's port on that switch.
switch_down() { local n; for n in 1 2 3; do ip link set "ss$n${1,,}" down; done; }
switch_up() { local n; for n in 1 2 3; do ip link set "ss$n${1,,}" up; done; }
tod() { date -u +%H:%M:%S.%1N; }
now() { date +%s.%N; }
elapsed() { python3 -c "import time; print(int(time.time() - $1))"; }
# poll_until LIMIT CONDITION: evaluates CONDITION every 0.2 s until it
# holds (then prints the seconds it took) or LIMIT seconds have passed (fails).
poll_until() {
  local t0 limit=$1
  t0=$(now)
  shift
  while [ "$(elapsed "$t0")" -lt "$limit" ]; do
    if eval "$*"; then since "$t0"; return 0; fi
    sleep 0.2
  done
  return 1
}
moves() { api 3 GET "/volumes/$1/moves" | body | json 'len(d)'; }
timeline() {
  api 3 GET "/volumes/$1/moves" | body | json '"\n".join("   timeline: " + m["at"] + " " + m["kind"] + " " + m["from_node"] + " -> " + m["to_node"] + " (epoch " + str(m["epoch"]) + ", I/O held " + str(m.get("held_ms")) + " ms): " + m["cause"] for m in reversed(d))'
}

# Bring up three nodes: node 3 bootstraps the cluster (and leads it), 1 and 2 join.
start 3 --plain-http --replication-addr "$(replication 3)"
ready 3
login 3
join_token() { api 3 POST /cluster/join-tokens | body | json 'd["token"]'; }
for n in 1 2; do
  PORTICO_JOIN_TOKEN=$(join_token) start "$n" --plain-http --replication-addr "$(replication "$n")" --join "https://$(member 3)"
  ready "$n"
  login "$n"
done
for n in 1 2 3; do
  [ "$(readlink "/proc/${pid[$n]}/ns/net")" = "$(readlink "/proc/$$/ns/net")" ] && fail "node $n runs in the root network namespace"
done
for n in 1 2; do wait_state 3 "node$n" online 30 >/dev/null; done
for n in 1 2 3; do
  out=$(api 3 PATCH "/nodes/node$n" '{"interfaces":[{"name":"eth0","traffic_types":["iscsi"]},{"name":"eth1","traffic_types":["iscsi"]},{"name":"clus0","traffic_types":["cluster","management","replication"]}]}')
  [ "$(status <<<"$out")" = 200 ] || fail "setting node $n's traffic types: $out"
done
pass "three nodes, each in its own network namespace, cabled to switch A (eth0), switch B (eth1) and the cluster network; node 3 leading"

targets=$(for n in 1 2; do printf '{"node":"node%s","portals":["%s","%s"]},' "$n" "$(portal "$n" A)" "$(portal "$n" B)"; done)
out=$(api 3 POST /target-groups "{\"name\":\"sample\",\"targets\":[${targets%,}]}")
[ "$(status <<<"$out")" = 201 ] || fail "creating the group: $out"
lun=0
for v in vol-a vol-b; do
  out=$(api 3 POST /volumes "{\"name\":\"$v\",\"size\":\"64MiB\",\"replicas\":2,\"node\":\"node1\"}")
  [ "$(status <<<"$out")" = 201 ] || fail "creating $v: $out"
  c=$(api 3 GET "/volumes/$v" | body | json '",".join(c["node"] for c in d["copies"])')
  [ "$c" = node2 ] || fail "$v's other copy is on $c, not node2"
  out=$(api 3 POST /target-groups/sample/luns "{\"volume\":\"$v\",\"lun\":$lun}")
  [ "$(status <<<"$out")" = 201 ] || fail "attaching $v: $out"
  lun=$((lun + 1))
done
for v in vol-a vol-b; do wait_healthy "$v" 30; done
echo "   vol-a (LUN 0) and vol-b (LUN 1): primary on node 1, the other copy on node 2, in sync"

# Discovery through each of the four portals names both targets, each with both portals.
first=""
for e in "${endpoints[@]}"; do
  read -r n sw <<<"$e"
  line=$(timeout 30 "$aluatool" --portal "$(portal "$n" "$sw")" sendtargets) || fail "SendTargets through $(portal "$n" "$sw"): $line"
  [ -z "$first" ] && first=$line
  [ "$line" = "$first" ] || fail "SendTargets through $(portal "$n" "$sw") gives '$line', through $(portal 1 A) '$first'"
done
for n in 1 2; do
  for sw in A B; do
    grep -q "$(iqn "$n") [^;]*$(portal "$n" "$sw")," <<<"$first" || fail "SendTargets does not list $(portal "$n" "$sw") under $(iqn "$n"): $first"
  done
done
[ "$(grep -o 'iqn\.' <<<"$first" | wc -l)" = 2 ] || fail "SendTargets lists other than two targets: $first"
echo "   SendTargets through each of the four portals: $first"

# rtpg_everywhere LUN: REPORT TARGET PORT GROUPS through every endpoint
# that answers is the same, with exactly one group active/optimized; prints
# it and keeps it in rtpg.
rtpg_everywhere() {
  local lun=$1 e n sw line first="" through=()
  for e in "${endpoints[@]}"; do
    read -r n sw <<<"$e"
    reach "$(portal "$n" "$sw")" || continue
    line=$(timeout 30 "$aluatool" --portal "$(portal "$n" "$sw")" --target "$(iqn "$n")" --lun "$lun" rtpg) ||
      fail "REPORT TARGET PORT GROUPS through node$n/$sw: $line"
    [ -z "$first" ] && first=$line
    [ "$line" = "$first" ] || fail "node$n/$sw reports '$line', ${through[0]} '$first'"
    through+=("node$n/$sw")
  done
  [ "$(grep -o active-optimized <<<"$first" | wc -l)" = 1 ] || fail "not exactly one active/optimized group: $first"
  echo "   REPORT TARGET PORT GROUPS for LUN $lun through ${through[*]}: $first"
  rtpg=$first
}
# tpg_of N: node N's target port group number, as the API lists it.
tpg_of() { api 3 GET /target-groups/sample | body | json "next(str(t['tpg']) for t in d['targets'] if t['node'] == 'node$1')"; }
# optimized_on N: LUN 0's and 1's active/optimized group is node N's, through every endpoint up.
optimized_on() {
  local lun
  for lun in 0 1; do
    rtpg_everywhere "$lun"
    grep -q "tpg $(tpg_of "$1") active-optimized" <<<"$rtpg" || fail "LUN $lun: node $1's group ($(tpg_of "$1")) is not the active/optimized one: $rtpg"
  done
}
optimized_on 1
pass "four endpoints (two targets, two portals each): discovery through any of them lists all four, and ALUA is the same through all four, node 1's target active/optimized"

# run_ledgers SECONDS: a ledger on each LUN, all four paths, in the background.
run_ledgers() {
  local lun
  ledger_pids=()
  for lun in 0 1; do
    "$ledger" "${paths[@]}" --policy group-by-prio --check-interval "$check_every" --timeout "$deadline" \
      --lun "$lun" --volume "vol-$lun" --blocks 2048 --depth 16 --seconds "$1" >"$work/ledger$lun.txt" 2>&1 &
    ledger_pids+=($!)
  done
}
# ledgers_verdict BOUND_MS: waits for both ledgers; fails unless both are
# intact with their longest pause within the bound; keeps the pauses in
# pause0 and pause1.
ledgers_verdict() {
  local lun line pause
  for lun in 0 1; do
    wait "${ledger_pids[$lun]}" || fail "the ledger on LUN $lun: $(cat "$work/ledger$lun.txt")"
    line=$(head -n 1 "$work/ledger$lun.txt")
    echo "   LUN $lun: $line"
    # The changes of the paths in use (the first and last five of many:
    # while no path serves, the checker puts Standby paths back every half
    # second and the next command fails them again), then each path's count.
    grep '^ledger: in use from' "$work/ledger$lun.txt" | names |
      awk '{ line[NR] = $0 } END { for (i = 1; i <= NR; i++) { if (NR > 12 && i == 6) { printf "ledger: ... %d more changes ...\n", NR - 10; i = NR - 5 } print line[i] } }' |
      sed 's/^/      /'
    grep -E '^ledger: (path|verdict)' "$work/ledger$lun.txt" | names | sed 's/^/      /'
    pause=$(sed -n 's/.*longest pause \([0-9]*\) ms.*/\1/p' <<<"$line")
    [ -n "$pause" ] && [ "$pause" -le "$1" ] || fail "LUN $lun: the longest pause, ${pause:-?} ms, is over $1 ms"
    printf -v "pause$lun" '%s' "$pause"
  done
  ledger_pids=()
}
# paths_at LUN WHEN: the endpoints LUN's ledger used at WHEN (HH:MM:SS.s,
# or final, or ever), named node1/A.
paths_at() {
  case "$2" in
    final | ever) "$here/scripts/ledger_paths.py" "$work/ledger$1.txt" "$2" | names ;;
    *) "$here/scripts/ledger_paths.py" "$work/ledger$1.txt" at "$2" | names ;;
  esac
}
# expect_paths LUN WHEN WANTED WHAT: fails unless paths_at LUN WHEN is WANTED.
expect_paths() {
  local got
  got=$(paths_at "$1" "$2")
  [ "$got" = "$3" ] || fail "LUN $1 used $got $4, not $3"
}
# used_after LUN WHEN N SWITCH: node N's path over SWITCH ended a command GOOD after WHEN.
used_after() { "$here/scripts/ledger_paths.py" "$work/ledger$1.txt" used-after "$2" "$(portal "$3" "$4")"; }
# unmoved N: both volumes' primaries on node N, with as many moves as before.
unmoved() {
  local v
  for v in vol-a vol-b; do
    [ "$(primary "$v")" = "$1" ] || fail "$v moved to node $(primary "$v")"
    [ "$(moves "$v")" = "${moved[$v]}" ] || fail "$v moved: $(api 3 GET "/volumes/$v/moves" | body)"
  done
}
declare -A moved
count_moves() { local v; for v in vol-a vol-b; do moved[$v]=$(moves "$v"); done; }

# switch_scenario NUMBER SWITCH NODE [WHILE]: the switch fails for 10 s while
# both volumes are on node NODE; nothing moves and I/O goes on over the other
# switch.
switch_scenario() {
  local number=$1 sw=$2 n=$3 while=${4:-} other lun t_down t_up line
  other=$([ "$sw" = A ] && echo B || echo A)
  count_moves
  run_ledgers 25
  sleep 5
  # Each time noted is a little before the change it stands for (the
  # ledger's times are to a tenth of a second).
  t_down=$(tod)
  sleep 0.2
  switch_down "$sw"
  reach "$(portal "$n" "$sw")" && fail "node$n/$sw still answers with switch $sw down"
  reach "$(portal "$n" "$other")" || fail "node$n/$other does not answer with only switch $sw down"
  sleep 10
  unmoved "$n"
  t_up=$(tod)
  sleep 0.2
  switch_up "$sw"
  ledgers_verdict "$switch_pause_ms"
  unmoved "$n"
  for lun in 0 1; do
    expect_paths "$lun" "$t_down" "node$n/A node$n/B" "before switch $sw failed"
    expect_paths "$lun" "$t_up" "node$n/$other" "while switch $sw was down"
    expect_paths "$lun" final "node$n/A node$n/B" "at the end"
    expect_paths "$lun" ever "node$n/A node$n/B" "at some time: only node $n's target should have carried I/O"
    used_after "$lun" "$t_up" "$n" "$sw" || fail "LUN $lun: node$n/$sw carried no command after switch $sw came back"
  done
  line="$number. switch $sw failed for 10 s$while: no volume moved; longest pause $pause0 ms (LUN 0), $pause1 ms (LUN 1); paths before: node$n/A node$n/B, during: node$n/$other, after: node$n/A node$n/B"
  summary+=("$line")
  pass "$line"
}
summary=()

echo "-- 1. switch A fails"
switch_scenario 1 A 1
echo "-- 2. switch B fails"
switch_scenario 2 B 1

echo "-- 3. node 1, the active/optimized target's node, is killed"
count_moves
run_ledgers 22
sleep 5
t_kill=$(tod)
sleep 0.2
t0=$(now)
kill -9 "${pid[1]}"
wait "${pid[1]}" 2>/dev/null || true
unset 'pid[1]'
took=$(wait_primary_moves vol-a 1 15)
wait_primary_moves vol-b 1 15 >/dev/null
for v in vol-a vol-b; do [ "$(primary "$v")" = 2 ] || fail "$v moved to node $(primary "$v"), not node 2"; done
echo "   both volumes' primaries on node 2 $(since "$t0") s after the kill (vol-a $took s)"
ledgers_verdict "$node_pause_ms"
for lun in 0 1; do
  expect_paths "$lun" "$t_kill" "node1/A node1/B" "before the kill"
  expect_paths "$lun" final "node2/A node2/B" "at the end"
done
optimized_on 2
for v in vol-a vol-b; do timeline "$v"; done
line="3. node 1 killed (kill -9): node 2's target active/optimized on both switches; longest pause $pause0 ms (LUN 0), $pause1 ms (LUN 1); paths before: node1/A node1/B, after: node2/A node2/B"
summary+=("$line")
pass "$line"

echo "-- 4. switch A fails while node 1 is down"
switch_scenario 4 A 2 " while node 1 was down"

echo "-- 5. node 1 returns: resync, then failback after the hold time"
count_moves
run_ledgers 60
sleep 3
t_back=$(tod)
sleep 0.2
t0=$(now)
start 1 --plain-http --replication-addr "$(replication 1)"
ready 1
for v in vol-a vol-b; do wait_healthy "$v" 60; done
echo "   node 1 restarted: its copies resynced, both volumes healthy $(since "$t0") s after the restart"
for v in vol-a vol-b; do
  poll_until 50 "[ \"\$(primary $v)\" = 1 ]" >/dev/null || fail "$v did not fail back to node 1 within 50 s of its restart"
  echo "   $v failed back to node 1 $(since "$t0") s after the restart"
done
ledgers_verdict "$node_pause_ms"
for v in vol-a vol-b; do
  [ "$(moves "$v")" = $((moved[$v] + 1)) ] || fail "$v moved $(($(moves "$v") - moved[$v])) times after node 1 returned, not once"
  timeline "$v"
done
for lun in 0 1; do
  expect_paths "$lun" "$t_back" "node2/A node2/B" "before node 1 returned"
  expect_paths "$lun" final "node1/A node1/B" "at the end"
done
optimized_on 1
for v in vol-a vol-b; do images_equal "$v"; done
line="5. node 1 back: resynced, failed back once after the hold time (${failback_after} s); longest pause $pause0 ms (LUN 0), $pause1 ms (LUN 1); paths before: node2/A node2/B, after: node1/A node1/B"
summary+=("$line")
pass "$line"

for line in "${summary[@]}"; do echo "sample-setup: $line"; done
echo "sample-setup: all checks passed"
