#!/usr/bin/env bash
# Link faults (CLUSTER.md §3 and §4): three `portico serve` nodes, each in
# its own network namespace pfN with one link per traffic type, so that one
# link is pulled while the others stay up:
#
#   iSCSI        iscsi0  10.61.N.2  (root side pfNi, 10.61.N.1)  portal :3260
#   replication  repl0   10.62.N.2  (root side pfNr, 10.62.N.1)  :3270
#   cluster/API  clus0   10.63.N.2  (root side pfNc, 10.63.N.1)  HTTP, cluster channel
#
# The root namespace routes between the nodes (ip_forward on for the test;
# a blackhole route per network drops what a pulled link would have
# carried, as a dead switch port does); the test initiator (ledger,
# aluatool) runs there and reaches the three portals over the iSCSI links.
# Pulling a link is `ip link set pfNx down` on the root side: the node's
# end loses its carrier, its peers hear nothing more. One target group with
# a target on each node; vol-f, two copies, primary on node 2 (not the
# Raft leader), its other copy on node C (1 or 3, as placement chooses;
# node 1 so far), as LUN 0; the ledger writes throughout each scenario and
# checks every acknowledged write.
#
#  1. node 2's replication link pulled for 12 s: only replication is cut
#     (node 2's API and portal answer, it stays online); the primary marks
#     its copy out of sync (audited), writes go on (pause <= 10 s), nothing
#     is lost, vol-f stays on node 2 (no failover: node 2 never left the
#     cluster); the link back, the copy is resynced (<= 60 s) and the
#     images are equal;
#  2. node 2's iSCSI link pulled (a switch failure; its cluster and
#     replication links up): within 10 s the leader hands vol-f's primary
#     over to node C (audited `volume.failover`, the cause naming the iSCSI
#     portals), pause <= 10 s, nothing lost, node 2's copy stays in sync
#     (a hand-over: nothing resynced), and vol-f stays on node C while
#     node 2's portals are unreachable, also past the hold time (REPORT
#     TARGET PORT GROUPS through nodes 1 and 3: node C's group the one
#     active/optimized); the link back, node 2 gets the role back by
#     failback once its portals have been reachable for the hold time
#     (15 s here; <= 60 s), with nothing resynced either;
#  3. node 2's iSCSI link flaps 3 times (6 s down, 5 s up) while it holds
#     the primaries of vol-g (new, LUN 1) and vol-f: each moves away once
#     and no more, nothing is lost; vol-g comes back once, the hold time
#     after the last flap; vol-f, which failed back in scenario 2, stays
#     where it is (one failback per volume in 10 minutes): no failback
#     storm.
#
# After each scenario REPORT TARGET PORT GROUPS through all three ports is
# the same with exactly one group active/optimized. Needs root (network
# namespaces and veth pairs); removes them, and restores ip_forward, on exit.
#
# usage: scripts/link-fault-test.sh PORTICO_BINARY
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
portico=${1:?usage: link-fault-test.sh PORTICO_BINARY}
portico=$(realpath "$portico")

scenario=link-fault
# No copy is rebuilt elsewhere during this test; a preferred node gets its
# volume back after 15 s online, in sync and reachable.
rebuild_after=3600
failback_after=15
. "$here/scripts/cluster-lib.sh"

# The network: made only once none of its names and networks is taken;
# taken away, with the nodes and the ledger, on any exit.
net_made=""
old_forward=""
teardown() {
  [ -n "${ledger_pid:-}" ] && kill -9 "$ledger_pid" 2>/dev/null || true
  cleanup
  if [ -n "$net_made" ]; then
    local n k
    for n in 1 2 3; do
      ip netns del "pf$n" 2>/dev/null || true
      for k in i r c; do ip link del "pf$n$k" 2>/dev/null || true; done
    done
    for k in 61 62 63; do ip route del blackhole "10.$k.0.0/16" 2>/dev/null || true; done
  fi
  [ -z "$old_forward" ] || echo "$old_forward" >/proc/sys/net/ipv4/ip_forward
}
trap teardown EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || fail "link-fault-test.sh needs root: it makes network namespaces and veth pairs"
ip netns add pf-probe-$$ 2>/dev/null && ip netns exec pf-probe-$$ true && ip netns del pf-probe-$$ ||
  { ip netns del pf-probe-$$ 2>/dev/null || true; fail "ip netns does not work here"; }
for n in 1 2 3; do
  ip netns list | grep -qw "pf$n" && fail "the network namespace pf$n exists already (a run that did not clean up? ip netns del pf$n)"
  for k in i r c; do ip link show "pf$n$k" >/dev/null 2>&1 && fail "the interface pf$n$k exists already (ip link del pf$n$k)"; done
done
ip route show | grep -q '^\(blackhole \)\?10\.6[123]\.' && fail "the root namespace routes 10.61-63.x.x already: $(ip route show | grep '10\.6[123]\.')"

cargo build -q -p target-engine --features test-util --example aluatool --example ledger
aluatool="$CARGO_TARGET_DIR/debug/examples/aluatool"
ledger="$CARGO_TARGET_DIR/debug/examples/ledger"
mkdir -p "$work/site"

net_made=1
old_forward=$(cat /proc/sys/net/ipv4/ip_forward)
for n in 1 2 3; do
  ip netns add "pf$n"
  netns[$n]=pf$n
  ip -n "pf$n" link set lo up
  for link in i:61:iscsi0 r:62:repl0 c:63:clus0; do
    IFS=: read -r k net dev <<<"$link"
    ip link add "pf$n$k" type veth peer name "$dev" netns "pf$n"
    ip addr add "10.$net.$n.1/24" dev "pf$n$k"
    ip link set "pf$n$k" up
    ip -n "pf$n" addr add "10.$net.$n.2/24" dev "$dev"
    ip -n "pf$n" link set "$dev" up
    ip -n "pf$n" route add "10.$net.0.0/16" via "10.$net.$n.1"
  done
done
# Without these, what a pulled link would carry would follow the default route.
for k in 61 62 63; do ip route add blackhole "10.$k.0.0/16"; done
echo 1 >/proc/sys/net/ipv4/ip_forward

http() { echo "10.63.$1.2:$http_port"; }
member() { echo "10.63.$1.2:$cluster_port"; }
replication() { echo "10.62.$1.2:3270"; }
portal() { echo "10.61.$1.2:3260"; }
iqn() { echo "iqn.2026-11.local.portico:g.node$1"; }
paths=()
for n in 1 2 3; do paths+=(--path "$(portal "$n")=$(iqn "$n")"); done
# reach IP:PORT: whether a TCP connection from the root namespace (over
# the node's link of that network) opens within 2 s; the node logs it as
# a peer 10.6x.N.1 that hung up.
reach() { timeout 2 bash -c "exec 3<>/dev/tcp/${1%:*}/${1##*:}" 2>/dev/null; }
# pull N KIND, plug N KIND: node N's link of that kind (i, r, c) down or up.
pull() { ip link set "pf$1$2" down; }
plug() { ip link set "pf$1$2" up; }
# audit: the whole audit log, newest first, as one JSON list (every page).
audit() {
  local page=1 out all="[]"
  while :; do
    out=$(api 1 GET "/audit?per_page=200&page=$page" | body)
    all=$(python3 -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1]) + json.loads(sys.argv[2])["entries"]))' "$all" "$out")
    [ "$(json 'len(d["entries"]) < 200' <<<"$out")" = True ] && break
    page=$((page + 1))
  done
  echo "$all"
}
# audit_count ACTION; audit_detail ACTION: how many entries that succeeded,
# the newest one's detail.
audit_count() { audit | json "sum(1 for r in d if r['action'] == '$1' and r['result'] == 'success')"; }
audit_detail() { audit | json "next(r['detail'] for r in d if r['action'] == '$1' and r['result'] == 'success')"; }
moves() { api 1 GET "/volumes/${1:-vol-f}/moves" | body | json 'len(d)'; }
timeline() {
  api 1 GET "/volumes/${1:-vol-f}/moves" | body | json '"\n".join("   timeline: " + m["at"] + " " + m["kind"] + " " + m["from_node"] + " -> " + m["to_node"] + " (epoch " + str(m["epoch"]) + ", I/O held " + str(m.get("held_ms")) + " ms): " + m["cause"] for m in reversed(d))'
}
# in_sync N: whether node N's copy of vol-f is in sync (True/False).
in_sync() { api 1 GET /volumes/vol-f | body | json "next(str(c['in_sync']) for c in d['copies'] if c['node'] == 'node$1')"; }
resyncs() { grep -c "resync starts.*volume=vol-f" <(sed 's/\x1b\[[0-9;]*m//g' "$work/node$1.log") || true; }
now() { date +%s.%N; }
# elapsed T0: whole seconds since T0.
elapsed() { python3 -c "import time; print(int(time.time() - $1))"; }
# poll_since T0 LIMIT CONDITION: evaluates CONDITION every 0.2 s until it
# holds, then prints the seconds since T0; fails if LIMIT whole seconds
# have passed since T0 first.
poll_since() {
  local t0=$1 limit=$2
  shift 2
  while [ "$(elapsed "$t0")" -lt "$limit" ]; do
    if eval "$*"; then since "$t0"; return 0; fi
    sleep 0.2
  done
  return 1
}

# Bring up three nodes, each in its namespace: node 1 bootstraps, 2 and 3 join.
start 1 --plain-http --replication-addr "$(replication 1)"
ready 1
login 1
join_token() { api 1 POST /cluster/join-tokens | body | json 'd["token"]'; }
for n in 2 3; do
  PORTICO_JOIN_TOKEN=$(join_token) start "$n" --plain-http --replication-addr "$(replication "$n")" --join "https://$(member 1)"
  ready "$n"
  login "$n"
done
for n in 1 2 3; do
  [ "$(readlink "/proc/${pid[$n]}/exe")" = "$portico" ] || fail "pid ${pid[$n]} is not node $n's portico: $(readlink "/proc/${pid[$n]}/exe")"
  [ "$(readlink "/proc/${pid[$n]}/ns/net")" = "$(readlink "/proc/$$/ns/net")" ] && fail "node $n runs in the root network namespace"
done
for n in 2 3; do wait_state 1 "node$n" online 30 >/dev/null; done
for n in 1 2 3; do
  out=$(api 1 PATCH "/nodes/node$n" '{"interfaces":[{"name":"iscsi0","traffic_types":["iscsi"]},{"name":"repl0","traffic_types":["replication"]},{"name":"clus0","traffic_types":["cluster","management"]}]}')
  [ "$(status <<<"$out")" = 200 ] || fail "setting node $n's traffic types: $out"
done
pass "three nodes, each in its own network namespace (iSCSI, replication and cluster links), node 1 leading"

targets=$(for n in 1 2 3; do printf '{"node":"node%s","portals":["%s"]},' "$n" "$(portal "$n")"; done)
out=$(api 1 POST /target-groups "{\"name\":\"g\",\"targets\":[${targets%,}]}")
[ "$(status <<<"$out")" = 201 ] || fail "creating the group: $out"
out=$(api 1 POST /volumes '{"name":"vol-f","size":"64MiB","replicas":2,"node":"node2"}')
[ "$(status <<<"$out")" = 201 ] || fail "creating vol-f: $out"
c=$(api 1 GET /volumes/vol-f | body | json 'd["copies"][0]["node"]' | tr -dc 0-9)
[ "$c" = 1 ] || [ "$c" = 3 ] || fail "vol-f's other copy is on node $c"
out=$(api 1 POST /target-groups/g/luns '{"volume":"vol-f","lun":0}')
[ "$(status <<<"$out")" = 201 ] || fail "attaching vol-f: $out"
wait_healthy vol-f 30
echo "   vol-f: primary on node 2, its other copy on node $c, in sync"
stream=$(ip netns exec pf2 ss -Htn state established dst "10.62.$c.2" | awk '{print $3 " -> " $4}' | head -n 1)
[ -n "$stream" ] || fail "node 2 has no connection to node $c over the replication link"
echo "   node 2's replication stream to node $c: $stream"
one_optimized 0 1 2 3

echo "-- 1. the replication link of the primary's node pulled for 12 s"
n_moves=$(moves)
oos=$(audit_count volume.copy.out_of_sync)
run_ledger 0 vol-f 22
sleep 4
pull 2 r
t0=$(now)
took=$(poll_since "$t0" 10 '[ "$(in_sync "$c" 2>/dev/null || true)" = False ]') ||
  fail "node $c's copy of vol-f is still in sync 10 s after node 2's replication link went: $(api 1 GET /volumes/vol-f | body)"
echo "   pf2r down: node $c's copy of vol-f out of sync $took s later ($(api 1 GET /volumes/vol-f | body | json 'd["state"]'))"
reach "$(replication 2)" && fail "node 2's replication address still answers with pf2r down"
reach "$(member 2)" || fail "node 2's cluster address does not answer with only pf2r down"
reach "$(portal 2)" || fail "node 2's portal does not answer with only pf2r down"
while [ "$(elapsed "$t0")" -lt 12 ]; do
  [ "$(primary vol-f)" = 2 ] || fail "vol-f moved to node $(primary vol-f) while only node 2's replication link was down"
  [ "$(state_of 1 node2)" = online ] || fail "node 2 is $(state_of 1 node2) while only its replication link is down"
  sleep 1
done
echo "   only node 2's replication traffic is cut: its replication address does not answer, its cluster address and portal do; it stays online, vol-f on it, throughout"
plug 2 r
t_up=$(now)
wait_healthy vol-f 60
echo "   pf2r up again: vol-f healthy, node $c's copy resynced, $(since "$t_up") s later (the ledger writing)"
ledger_verdict 10000
p1=$last_pause
[ "$(audit_count volume.copy.out_of_sync)" -gt "$oos" ] || fail "no volume.copy.out_of_sync in the audit log"
echo "   audit: volume.copy.out_of_sync: $(audit_detail volume.copy.out_of_sync)"
[ "$(primary vol-f)" = 2 ] || fail "vol-f's primary is on node $(primary vol-f) after the replication link came back"
[ "$(moves)" = "$n_moves" ] || fail "vol-f moved: $(api 1 GET /volumes/vol-f/moves | body)"
images_equal vol-f
one_optimized 0 1 2 3
pass "node 2's replication link pulled for 12 s: its copy on node $c was marked out of sync, writes went on (longest pause ${p1} ms), nothing was lost, vol-f stayed on node 2, and the copy was resynced once the link came back"

echo "-- 2. the iSCSI link of the primary's node pulled (a switch failure)"
n_moves=$(moves)
oos=$(audit_count volume.copy.out_of_sync)
fo=$(audit_count volume.failover)
rc=$(resyncs "$c")
r2=$(resyncs 2)
run_ledger 0 vol-f 30
sleep 4
pull 2 i
t0=$(now)
t_move=$(poll_since "$t0" 10 'p=$(primary vol-f 2>/dev/null || true); [ -n "$p" ] && [ "$p" != 2 ]') || t_move=""
# Only node 2's iSCSI traffic is cut: it answers over its other links.
only_iscsi_cut() {
  reach "$(portal 2)" && fail "node 2's portal still answers with pf2i down"
  reach "$(replication 2)" || fail "node 2's replication address does not answer with only pf2i down"
  [ "$(status < <(api 2 GET /me))" = 200 ] || fail "node 2's API does not answer over the cluster link with only pf2i down"
  [ "$(state_of 1 node2)" = online ] || fail "node 2 is $(state_of 1 node2) with only its iSCSI link down"
  echo "   only node 2's iSCSI traffic is cut: its portal does not answer, its API and replication address do, it is online"
}
if [ -z "$t_move" ]; then
  only_iscsi_cut
  fail "vol-f's primary is still on node 2 10 s after node 2's iSCSI link went (moves: $(api 1 GET /volumes/vol-f/moves | body))"
fi
t_moved=$(now)
echo "   pf2i down: vol-f's primary is on node $(primary vol-f) $t_move s later"
only_iscsi_cut
[ "$(primary vol-f)" = "$c" ] || fail "vol-f moved to node $(primary vol-f), not node $c, which keeps its other copy"
[ "$(audit_count volume.failover)" -gt "$fo" ] || fail "no volume.failover in the audit log"
detail=$(audit_detail volume.failover)
echo "   audit: volume.failover: $detail"
grep -qi 'iscsi\|portal' <<<"$detail" || fail "the failover's audit entry does not name the iSCSI portals as its cause: $detail"
# Unreachable, node 2 does not get vol-f back, also past the hold time.
while [ "$(elapsed "$t_moved")" -lt $((failback_after + 5)) ]; do
  [ "$(primary vol-f)" = "$c" ] || fail "vol-f went back to node $(primary vol-f) while node 2's portals were unreachable"
  [ "$(state_of 1 node2)" = online ] || fail "node 2 is $(state_of 1 node2) with only its iSCSI link down"
  [ "$(in_sync 2)" = True ] || fail "node 2's copy of vol-f is out of sync after the hand-over: $(api 1 GET /volumes/vol-f | body)"
  sleep 1
done
echo "   node 2 online, its copy in sync, unreachable over iSCSI for $((failback_after + 5)) s more: vol-f stays on node $c"
ledger_verdict 10000
p2=$last_pause
[ "$(healthy vol-f)" = yes ] || fail "vol-f is not healthy after the hand-over: $(api 1 GET /volumes/vol-f | body)"
[ "$(audit_count volume.copy.out_of_sync)" = "$oos" ] || fail "a copy was marked out of sync in the hand-over: $(audit_detail volume.copy.out_of_sync)"
one_optimized 0 1 3
plug 2 i
t_up=$(now)
t_back=$(poll_since "$t_up" 60 '[ "$(primary vol-f)" = 2 ]') ||
  fail "vol-f did not fail back to node 2 within 60 s of its iSCSI link coming back"
echo "   pf2i up again: vol-f failed back to node 2 $t_back s later (hold time ${failback_after} s once reachable)"
python3 -c "import sys; sys.exit(0 if $t_back >= $failback_after - 0.5 else 1)" ||
  fail "vol-f failed back $t_back s after node 2's portals came back, before the hold time (${failback_after} s)"
timeline
[ "$(moves)" = $((n_moves + 2)) ] || fail "vol-f moved $(($(moves) - n_moves)) times, not twice (the failover and the failback)"
wait_healthy vol-f 30
[ "$(audit_count volume.copy.out_of_sync)" = "$oos" ] || fail "a copy was marked out of sync in the failback: $(audit_detail volume.copy.out_of_sync)"
[ "$(resyncs "$c")" = "$rc" ] && [ "$(resyncs 2)" = "$r2" ] || fail "a copy of vol-f was resynced in the hand-overs"
images_equal vol-f
one_optimized 0 1 2 3
pass "node 2's iSCSI link pulled: vol-f handed over to node $c after $t_move s (longest pause ${p2} ms, nothing lost, nothing resynced) and kept there while node 2 was unreachable; failed back $t_back s after the link came back"

echo "-- 3. node 2's iSCSI link flaps 3 times (6 s down, 5 s up)"
out=$(api 1 POST /volumes '{"name":"vol-g","size":"16MiB","replicas":2,"node":"node2"}')
[ "$(status <<<"$out")" = 201 ] || fail "creating vol-g: $out"
out=$(api 1 POST /target-groups/g/luns '{"volume":"vol-g","lun":1}')
[ "$(status <<<"$out")" = 201 ] || fail "attaching vol-g: $out"
wait_healthy vol-g 30
g_copy=$(api 1 GET /volumes/vol-g | body | json 'd["copies"][0]["node"]' | tr -dc 0-9)
echo "   vol-g: primary on node 2, its other copy on node $g_copy, in sync, LUN 1"
f_moves=$(moves vol-f)
run_ledger 1 vol-g 36
sleep 2
for flap in 1 2 3; do
  pull 2 i
  sleep 6
  plug 2 i
  t_up=$(now)
  sleep 5
done
ledger_verdict 10000
p3=$last_pause
[ "$(moves vol-g)" = 1 ] || fail "vol-g moved $(moves vol-g) times while node 2's link flapped, not once: $(api 1 GET /volumes/vol-g/moves | body)"
[ "$(moves vol-f)" = $((f_moves + 1)) ] || fail "vol-f moved $(($(moves vol-f) - f_moves)) times while node 2's link flapped, not once"
echo "   after 3 flaps: vol-g and vol-f each moved once, to nodes $(primary vol-g) and $(primary vol-f)"
t_back=$(poll_since "$t_up" 40 '[ "$(primary vol-g)" = 2 ]') ||
  fail "vol-g did not fail back to node 2 within 40 s of the last flap"
python3 -c "import sys; sys.exit(0 if $t_back >= $failback_after - 0.5 else 1)" ||
  fail "vol-g failed back $t_back s after the last flap, before the hold time (${failback_after} s)"
echo "   vol-g failed back to node 2 $t_back s after the last flap (hold time ${failback_after} s once reachable)"
# vol-f failed back once in the last 10 minutes already: it stays.
while [ "$(elapsed "$t_up")" -lt $((failback_after + 8)) ]; do sleep 0.5; done
[ "$(primary vol-f)" != 2 ] || fail "vol-f failed back to node 2 a second time within 10 minutes"
[ "$(moves vol-g)" = 2 ] || fail "vol-g moved $(moves vol-g) times, not twice (the failover and the failback)"
[ "$(moves vol-f)" = $((f_moves + 1)) ] || fail "vol-f moved again after the flaps"
timeline vol-g
wait_healthy vol-g 30
images_equal vol-g
one_optimized 1 1 2 3
pass "node 2's iSCSI link flapped 3 times: each volume on it moved once (longest pause ${p3} ms, nothing lost); vol-g came back once, ${t_back} s after the last flap; vol-f, which had failed back within 10 minutes, stayed: no failback storm"

echo "   pauses: replication link ${p1} ms, iSCSI link ${p2} ms, flapping iSCSI link ${p3} ms"
echo "link-fault: all checks passed"
