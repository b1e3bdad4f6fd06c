#!/usr/bin/env bash
# ALUA failover across nodes (CLUSTER.md §3 and §4), with three `portico
# serve` processes on 127.0.1.1, 127.0.2.1 and 127.0.3.1: one target group
# with a target on each node, and vol-f, a volume with two copies, its
# primary on node 2 (not the Raft leader), as LUN 0. The ledger test
# initiator (every path of the group, most-recently-used path choice, TEST
# UNIT READY checker) writes self-describing records throughout each
# scenario and checks every acknowledged one on read-back; each scenario
# prints the longest pause between two acknowledged writes and the verdict.
#
#  1. kill -9 of the primary's node: the controller promotes the in-sync
#     copy (pause <= 10 s), no acknowledged write is lost;
#  2. the old primary restarts: it comes back as an out-of-sync copy, is
#     resynced, and once online and in sync for the hold time (15 s here)
#     gets the role back, exactly once (no move in the next 20 s);
#  3. a planned switchover through the API to the other copy's node
#     (pause <= 5 s): the old primary drains and hands over, its copy stays
#     in sync, nothing is resynced, and the new node is preferred;
#  4. SET TARGET PORT GROUPS from the test initiator, through a standby
#     port, for node 2's group moves the primary there; for a group whose
#     node keeps no copy it is ILLEGAL REQUEST;
#  5. SIGSTOP of the primary for 12 s, then SIGCONT: another node takes
#     over, the old primary, resumed, never answers GOOD to a read, and it
#     does not get the role back (one failback per volume in 10 minutes);
#  6. kill -9 of the Raft leader when it holds a volume's primary (vol-l,
#     LUN 1): a new leader is elected and fails it over (pause <= 10 s).
#
# After every scenario, REPORT TARGET PORT GROUPS through every running
# port shows the same groups with exactly one active/optimized, and once
# the copies are in sync, their images are equal.
#
# usage: scripts/failover-test.sh PORTICO_BINARY
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
portico=${1:?usage: failover-test.sh PORTICO_BINARY}
cargo build -q -p target-engine --features test-util --example aluatool --example ledger
aluatool="$CARGO_TARGET_DIR/debug/examples/aluatool"
ledger="$CARGO_TARGET_DIR/debug/examples/ledger"

scenario=failover
# No copy is rebuilt elsewhere during this test; a preferred node gets its
# volume back after 15 s online and in sync.
rebuild_after=3600
failback_after=15
. "$here/scripts/cluster-lib.sh"
mkdir -p "$work/site"

# Bring up three nodes: node 1 bootstraps, 2 and 3 join.
start 1
ready 1
login 1
join_token() { api 1 POST /cluster/join-tokens | body | json 'd["token"]'; }
for n in 2 3; do
  PORTICO_JOIN_TOKEN=$(join_token) start "$n" --join "https://$(member 1)"
  ready "$n"
  login "$n"
done
for n in 2 3; do wait_state 1 "node$n" online 30 >/dev/null; done
pass "three nodes, node 1 leading"

iscsi_port=$(free_port)
targets=$(for n in 1 2 3; do printf '{"node":"node%s","portals":["127.0.%s.1:%s"]},' "$n" "$n" "$iscsi_port"; done)
out=$(api 1 POST /target-groups "{\"name\":\"g\",\"targets\":[${targets%,}]}")
[ "$(status <<<"$out")" = 201 ] || fail "creating the group: $out"
iqn() { echo "iqn.2026-11.local.portico:g.node$1"; }
portal() { echo "127.0.$1.1:$iscsi_port"; }
paths=()
for n in 1 2 3; do paths+=(--path "127.0.$n.1:$iscsi_port=$(iqn "$n")"); done

out=$(api 1 POST /volumes '{"name":"vol-f","size":"64MiB","replicas":2,"node":"node2"}')
[ "$(status <<<"$out")" = 201 ] || fail "creating vol-f: $out"
c=$(api 1 GET /volumes/vol-f | body | json 'd["copies"][0]["node"]' | tr -dc 0-9)
out=$(api 1 POST /target-groups/g/luns '{"volume":"vol-f","lun":0}')
[ "$(status <<<"$out")" = 201 ] || fail "attaching vol-f: $out"
wait_healthy vol-f 30
echo "   vol-f: primary on node 2, its other copy on node $c, in sync"
one_optimized 0 1 2 3

echo "-- 1. kill -9 of the primary's node"
run_ledger 0 vol-f 16
sleep 4
kill -9 "${pid[2]}"; wait "${pid[2]}" 2>/dev/null || true; unset 'pid[2]'
took=$(wait_primary_moves vol-f 2 20)
echo "   node 2 killed: vol-f's primary is on node $(primary vol-f) $took s later"
[ "$(primary vol-f)" = "$c" ] || fail "vol-f moved to node $(primary vol-f), not node $c, which kept the in-sync copy"
ledger_verdict 10000
p1=$last_pause
detail=$(api 1 GET "/audit?per_page=200" | body | json 'next(r["detail"] for r in d["entries"] if r["action"] == "volume.failover")')
echo "   audit: volume.failover: $detail"
alive=$(printf '%s ' 1 3)
one_optimized 0 $alive
pass "kill -9 of the primary's node: node $c, which kept the in-sync copy, took over; longest pause ${p1} ms; no acknowledged write lost"

echo "-- 2. the old primary restarts, and the role comes back once"
moves() { api 1 GET /volumes/vol-f/moves | body | json 'len(d)'; }
t0=$(date +%s.%N)
start 2
ready 2
wait_healthy vol-f 60
echo "   node 2 restarted: its copy of vol-f is in sync again $(since "$t0") s after the restart"
wait_state 1 node2 online 30 >/dev/null
echo "   node 2 is online again $(since "$t0") s after the restart (10 s of steady heartbeats)"
for i in $(seq 1 200); do [ "$(primary vol-f)" = 2 ] && break; sleep 0.2; done
[ "$(primary vol-f)" = 2 ] || fail "vol-f did not fail back to node 2, its preferred node, within 40 s of it being online"
echo "   vol-f failed back to node 2 $(since "$t0") s after the restart (hold time ${failback_after} s once online and in sync)"
n_moves=$(moves)
sleep 20
[ "$(moves)" = "$n_moves" ] || fail "vol-f moved again after its failback: $(api 1 GET /volumes/vol-f/moves | body)"
api 1 GET /volumes/vol-f/moves | body | json '"\n".join("   timeline: " + m["at"] + " " + m["kind"] + " " + m["from_node"] + " -> " + m["to_node"] + " (epoch " + str(m["epoch"]) + ", I/O held " + str(m.get("held_ms")) + " ms): " + m["cause"] for m in reversed(d))'
wait_healthy vol-f 60
images_equal vol-f
one_optimized 0 1 2 3
pass "the old primary came back as a copy, was resynced, and got the role back exactly once, after the hold time; both images are equal"

echo "-- 3. a planned switchover to node $c"
resyncs() { grep -c "resync starts.*volume=vol-f" <(sed 's/\x1b\[[0-9;]*m//g' "$work/node$c.log") || true; }
before=$(resyncs)
run_ledger 0 vol-f 12
sleep 4
t0=$(date +%s.%N)
out=$(api 3 POST /volumes/vol-f/primary "{\"node\":\"node$c\"}")
[ "$(status <<<"$out")" = 200 ] || fail "moving vol-f's primary to node $c: $out"
echo "   POST /volumes/vol-f/primary {node$c} through node 3: answered after $(since "$t0") s"
ledger_verdict 5000
p3=$last_pause
detail=$(api 1 GET "/audit?per_page=200" | body | json 'next(r["detail"] for r in d["entries"] if r["action"] == "volume.switchover" and r["result"] == "success")')
echo "   audit: volume.switchover: $detail"
grep -q "stays in sync" <<<"$detail" || fail "the old primary did not hand over with everything settled: $detail"
[ "$(healthy vol-f)" = yes ] || fail "vol-f is not healthy right after the switchover: $(api 1 GET /volumes/vol-f | body)"
[ "$(resyncs)" = "$before" ] || fail "node $c, the new primary, resynced a copy after the switchover"
preferred=$(api 1 GET /volumes/vol-f | body | json 'd["preferred_node"]')
[ "$preferred" = "node$c" ] || fail "after the switchover, vol-f's preferred node is $preferred"
images_equal vol-f
one_optimized 0 1 2 3
grep -q "tpg $c active-optimized preferred" <<<"$rtpg" || fail "the PREF bit is not on node $c's group after the switchover: $rtpg"
out=$(api 1 POST /volumes/vol-f/primary "{\"node\":\"node$c\"}")
[ "$(status <<<"$out")" = 409 ] || fail "moving vol-f to node $c again: $out"
pass "a planned switchover through the API: longest pause ${p3} ms, nothing resynced, node $c preferred from now on (its group has the PREF bit); a second one to the same node is refused (409)"

echo "-- 4. explicit ALUA: SET TARGET PORT GROUPS from the initiator"
stpg() { timeout 30 "$aluatool" --portal "127.0.$1.1:$iscsi_port" --target "$(iqn "$1")" "stpg:$2"; }
run_ledger 0 vol-f 10
sleep 3
answer=$(stpg 1 3)
echo "   group 3 (node 3 keeps no copy of vol-f): $answer"
[ "$answer" = "CHECK CONDITION, sense 5/26/00" ] || fail "SET TARGET PORT GROUPS for group 3 was not refused as an invalid parameter: $answer"
t0=$(date +%s.%N)
answer=$(stpg 3 2)
echo "   SET TARGET PORT GROUPS through node 3's port, group 2 active/optimized: $answer after $(since "$t0") s"
[ "$answer" = "GOOD, 0 bytes" ] || fail "SET TARGET PORT GROUPS for group 2: $answer"
[ "$(primary vol-f)" = 2 ] || fail "vol-f's primary is on node $(primary vol-f) after SET TARGET PORT GROUPS for group 2"
ledger_verdict 5000
pstpg=$last_pause
wait_healthy vol-f 30
images_equal vol-f
one_optimized 0 1 2 3
pass "SET TARGET PORT GROUPS moved vol-f's primary to node 2 (longest pause ${pstpg} ms); a group whose node keeps no copy is refused with ILLEGAL REQUEST"

echo "-- 5. SIGSTOP of the primary for 12 s"
run_ledger 0 vol-f 20
sleep 3
kill -STOP "${pid[2]}"
took=$(wait_primary_moves vol-f 2 20)
echo "   node 2 stopped (SIGSTOP): vol-f's primary is on node $(primary vol-f) $took s later"
sleep 12
kill -CONT "${pid[2]}"
# Resumed, node 2 serves vol-f's old placement no more: every read through
# its port for the next 3 s is refused.
answers=()
until_s=$((SECONDS + 3))
while [ "$SECONDS" -lt "$until_s" ]; do
  answers+=("$(timeout 10 "$aluatool" --portal "127.0.2.1:$iscsi_port" --target "$(iqn 2)" read 2>&1 || true)")
done
printf '%s\n' "${answers[@]}" | sort | uniq -c | sed 's/^ */   after SIGCONT, reads through node 2: /'
printf '%s\n' "${answers[@]}" | grep -q '^GOOD' && fail "node 2, resumed, answered GOOD to a read of vol-f after losing its primary"
ledger_verdict 10000
p4=$last_pause
wait_healthy vol-f 60
images_equal vol-f
one_optimized 0 1 2 3
# Failed back once within 10 minutes already: node 2, online and in sync
# for longer than the hold time, does not get vol-f back.
n_moves=$(moves)
wait_state 1 node2 online 30 >/dev/null
sleep $((failback_after + 5))
[ "$(primary vol-f)" = "$c" ] || fail "vol-f failed back to node $(primary vol-f) twice within 10 minutes"
[ "$(moves)" = "$n_moves" ] || fail "vol-f moved again: $(api 1 GET /volumes/vol-f/moves | body)"
echo "   node 2 online and in sync for over ${failback_after} s: vol-f stays on node $c (one failback per 10 minutes)"
pass "SIGSTOP of the primary for 12 s: node $c took over; node 2, resumed, never answered GOOD and did not get the role back; longest pause ${p4} ms; the ledger is intact"

echo "-- 6. kill -9 of the Raft leader, which holds a primary"
leader=$(api 1 GET /cluster | body | json 'd["leader"]')
out=$(api 1 POST /volumes "{\"name\":\"vol-l\",\"size\":\"64MiB\",\"replicas\":2,\"node\":\"node$leader\"}")
[ "$(status <<<"$out")" = 201 ] || fail "creating vol-l on node $leader: $out"
out=$(api 1 POST /target-groups/g/luns '{"volume":"vol-l","lun":1}')
[ "$(status <<<"$out")" = 201 ] || fail "attaching vol-l: $out"
wait_healthy vol-l 30
others=$(printf '%s\n' 1 2 3 | grep -vx "$leader" | tr '\n' ' ')
o=${others%% *}
# The API of a node that stays.
api_node() { api "$o" "$@"; }
run_ledger 1 vol-l 16
sleep 4
kill -9 "${pid[$leader]}"; wait "${pid[$leader]}" 2>/dev/null || true; unset "pid[$leader]"
t0=$(date +%s.%N)
for i in $(seq 1 100); do
  p=$(api_node GET /volumes/vol-l 2>/dev/null | body | json 'd["node"]' 2>/dev/null | tr -dc 0-9 || true)
  [ -n "$p" ] && [ "$p" != "$leader" ] && break
  sleep 0.2
done
[ -n "$p" ] && [ "$p" != "$leader" ] || fail "vol-l did not move from node $leader"
new_leader=$(api_node GET /cluster | body | json 'd["leader"]')
echo "   node $leader (leader, vol-l's primary) killed: node $new_leader leads, vol-l's primary is on node $p $(since "$t0") s later"
ledger_verdict 10000
p5=$last_pause
one_optimized 1 $others
pass "kill -9 of the leader holding vol-l's primary: node $new_leader, newly elected, failed it over to node $p; longest pause ${p5} ms"

echo "   pauses: kill -9 ${p1} ms, planned ${p3} ms, SET TARGET PORT GROUPS ${pstpg} ms, SIGSTOP ${p4} ms, leader kill ${p5} ms"
echo "failover: all checks passed"
