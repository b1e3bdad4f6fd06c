#!/usr/bin/env bash
# The control plane with three `portico serve` processes, one node each on
# 127.0.1.1, 127.0.2.1 and 127.0.3.1 (CLUSTER.md §1 and §4). Checks, printing
# each result:
#
#  1. node 1 bootstraps a cluster; an admin creates a join token through the
#     API; nodes 2 and 3 join with a token each (mutual TLS under the
#     cluster's CA) and become voters; every node reports the same three
#     members and the same leader, and lists three online nodes;
#     a user and an API token made on node 1 are good on nodes 3 and 2;
#  2. a spent token, a wrong secret and a wrong CA fingerprint are refused,
#     and the refused node does not start;
#  3. a volume created through a follower (forwarded to the leader) is
#     listed by every node with the same WWN (the times are printed); a target group with a target on node 1 and one on node 2
#     (added through node 2): discovery through either portal lists both;
#     node 2 in maintenance: its target stops, discovery leaves it out, a
#     volume is not placed on it; out of maintenance, with its portal taken
#     by another program, node 1 shows node 2's engine status (the portal
#     left out, and why); freed, the portal is back at the next change;
#     with a target on node 3 too and vol-a (held by node 2) as LUN 0:
#     discovery through each of the 3 portals lists the 3 targets, REPORT
#     TARGET PORT GROUPS is the same through all 3 ports (node 2's group
#     active/optimized, the others standby), and a read is refused with
#     04h/0Bh through the standby ports and succeeds through node 2's; a
#     REGISTER and RESERVE through node 1's standby port and a CLEAR
#     through node 3's run on node 2, and READ RESERVATION and READ KEYS
#     answer the same through every port;
#  4. kill -9 of the leader: the other two elect a leader (the time to
#     elect and to commit a change is printed), mark the killed node
#     offline, and take changes; the killed node, restarted, catches up to
#     the same applied index and is marked online again after 10 s of
#     steady heartbeats; then kill -9 of a follower: offline within 6 s,
#     online within 15 s of its restart;
#  6. (run before 5) a volume with two copies, primary on node 1: 32 MiB
#     written through node 1's port leave both images equal; the other
#     copy's node killed (kill -9), writes go on once the cluster marks the
#     copy out of sync (audited), and the volume reads degraded; restarted,
#     the copy resyncs only what changed, the volume is healthy and the
#     images are equal; nodes 2 and 3 stopped (SIGSTOP), node 1 refuses a
#     read of it within its 3 s lease (02h/04h/0Ah) and serves it again
#     after SIGCONT, and a ledger workload across both paths finds every
#     acknowledged write (its longest pause is printed); with the group's
#     other paths active/non-optimized, node 2's port serves it through
#     node 1 and libiscsi's MultipathIO tests pass across the two nodes'
#     targets, then standby again node 2's port refuses a read; a third copy is
#     added and taken away online; grown
#     online and written in its new part, both images are equal; its copy's
#     node killed for longer than --rebuild-after, the copy is made again
#     on node 3 (audited) and is equal, and the node, restarted, removes
#     its old copy's files; deleted, its image goes from both nodes;
#  5. an admin removes node 3: refused while it holds a volume, then done;
#     the two left keep a leader and take changes.
#
# usage: scripts/cluster-test.sh PORTICO_BINARY
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
portico=${1:?usage: cluster-test.sh PORTICO_BINARY}
# The test initiator's ALUA tool (REPORT TARGET PORT GROUPS, a read).
cargo build -q -p target-engine --features test-util --example aluatool --example writebench --example prtool --example ledger
aluatool="$CARGO_TARGET_DIR/debug/examples/aluatool"
ledger="$CARGO_TARGET_DIR/debug/examples/ledger"
shared="${PORTICO_SHARED_DIR:-$(cd "$(dirname "$0")/.." && pwd)/../shared}"
[ -d "$shared/tools" ] || shared=/work/shared
scorer="$shared/tools/iscsi-conformance"
[ -x "$scorer" ] || { echo "cluster-test: the conformance scorer is not at $scorer (set PORTICO_SHARED_DIR)" >&2; exit 1; }
prtool="$CARGO_TARGET_DIR/debug/examples/prtool"
writebench="$CARGO_TARGET_DIR/debug/examples/writebench"

scenario=cluster
# A copy's node offline this long gets its copy made again elsewhere: long
# enough for every restart below to come back first.
rebuild_after=30
. "$here/scripts/cluster-lib.sh"

mkdir -p "$work/site"

# 1. Bootstrap and join.
start 1
ready 1
login 1
leader=$(api 1 GET /cluster | body | json 'd["leader"]')
[ "$leader" = 1 ] || fail "node 1 does not lead its new cluster (leader: $leader)"
pass "node 1 created a one-node cluster and leads it"

new_token() {
  local out
  out=$(api 1 POST /cluster/join-tokens)
  [ "$(echo "$out" | status)" = 201 ] || fail "no join token: $out"
  echo "$out" | body | json 'd["token"]'
}
t2=$(new_token)
t3=$(new_token)
PORTICO_JOIN_TOKEN=$t2 start 2 --join "https://$(member 1)"
ready 2
# Node 3 joins through node 2, a follower, which forwards to the leader.
PORTICO_JOIN_TOKEN=$t3 start 3 --join "https://$(member 2)"
ready 3
login 2
login 3
for n in 1 2 3; do
  st=$(api "$n" GET /cluster | body)
  members=$(echo "$st" | json '",".join(str(m["raft_id"]) + ("v" if m["voter"] else "l") for m in sorted(d["members"], key=lambda m: m["raft_id"]))')
  l=$(echo "$st" | json 'd["leader"]')
  echo "   node $n: members $members, leader $l, role $(echo "$st" | json 'd["role"]')"
  [ "$members" = "1v,2v,3v" ] || fail "node $n does not see three voters: $members"
  [ "$l" = 1 ] || fail "node $n names leader $l"
done
listed=$(api 2 GET /nodes | body | json '", ".join(x["name"] + " " + str(x["raft_role"]) + " applied " + str(x["applied_index"]) + " last contact " + str(x["last_contact_ms"]) + " ms" for x in d)')
echo "   node 2 lists: $listed"
grep -q "applied None\|contact None" <<<"$listed" && fail "a member did not tell node 2 where it stands: $listed"
pass "nodes 2 and 3 joined with a token each (node 3 through a follower) and are voters; every node sees the same members and leader, and each member's applied index"

t0=$(date +%s.%N)
for n in 1 2 3; do
  for i in $(seq 1 100); do
    online=$(api "$n" GET /nodes | body | json '",".join(x["name"] for x in d if x["state"] == "online")')
    [ "$online" = "node1,node2,node3" ] && break
    sleep 0.2
  done
  [ "$online" = "node1,node2,node3" ] || fail "node $n lists online: $online"
done
echo "   every node lists the three nodes online $(since "$t0") s after node 3 joined (a new node is online after 10 s of steady heartbeats)"

# Users and API tokens are the cluster's: made on one node, good on any.
out=$(api 1 POST /users '{"username":"ops","password":"ops-password-1","role":"operator"}')
[ "$(echo "$out" | status)" = 201 ] || fail "creating the user ops on node 1: $out"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  -d '{"username":"ops","password":"ops-password-1"}' "http://$(http 3)/api/v1/login")
[ "$code" = 200 ] || fail "ops, made on node 1, cannot log in on node 3 ($code)"
me=$(curl -s -H "Authorization: Bearer ${token[1]}" "http://$(http 2)/api/v1/me" | json 'd["username"]')
[ "$me" = admin ] || fail "node 1's API token is not good on node 2 ($me)"
pass "a user made on node 1 logs in on node 3, and an API token made on node 1 works on node 2"

# 2. Tokens that must not work.
refused() {
  local n=$1 why=$2; shift 2
  rm -rf "$work/data$n"
  if PORTICO_ADMIN_PASSWORD=$password RUST_BACKTRACE=0 timeout 60 "$portico" serve --data-dir "$work/data$n" --node-name "node$n" \
      --http "127.0.4.1:$http_port" --cluster-addr "127.0.4.1:$cluster_port" --site-root "$work/site" "$@" \
      >"$work/node$n.log" 2>&1; then
    fail "a node started with $why"
  fi
  echo "   $why: $(sed -n '/^Caused by:/,$p' "$work/node$n.log" | grep -E '^ +[0-9]+: ' | tail -n 1 | sed 's/^ *[0-9]*: //')"
}
PORTICO_JOIN_TOKEN=$t2 refused 4 "a spent token" --join "https://$(member 1)"
grep -q "used already" "$work/node4.log" || fail "a spent token was not refused as spent"
t4=$(new_token)
PORTICO_JOIN_TOKEN="${t4%.*}.$(printf '0%.0s' $(seq 1 64))" refused 4 "a wrong secret" --join "https://$(member 1)"
grep -q "not known to the cluster" "$work/node4.log" || fail "a wrong secret was not refused"
PORTICO_JOIN_TOKEN="$(printf 'a%.0s' $(seq 1 64)).${t4#*.}" refused 4 "a wrong CA fingerprint" --join "https://$(member 1)"
grep -q "not from the CA" "$work/node4.log" || fail "a wrong fingerprint was not refused"
# An unused token revoked through a follower no longer admits anyone.
t4_id=${t4#*.}; t4_id=${t4_id%%.*}
open=$(api 3 GET /cluster/join-tokens | body | json '" ".join(t["id"] for t in d)')
[ "$open" = "$t4_id" ] || fail "node 3 lists the unused join tokens '$open', not $t4_id"
out=$(api 2 DELETE "/cluster/join-tokens/$t4_id")
[ "$(echo "$out" | status)" = 204 ] || fail "revoking a join token through node 2: $out"
out=$(api 2 DELETE "/cluster/join-tokens/$t4_id")
[ "$(echo "$out" | status)" = 404 ] || fail "revoking a join token twice: $out"
PORTICO_JOIN_TOKEN=$t4 refused 4 "a revoked token" --join "https://$(member 1)"
grep -q "not known to the cluster" "$work/node4.log" || fail "a revoked token was not refused"
members=$(api 1 GET /cluster | body | json 'len(d["members"])')
[ "$members" = 3 ] || fail "a refused node is a member: $members members"
pass "a spent token, a wrong secret, a wrong CA fingerprint and a revoked token are refused, and the cluster keeps three members"

# 3. A change through a follower.
t0=$(date +%s.%N)
out=$(api 2 POST /volumes '{"name":"vol-a","size":"4MiB","node":"node2"}')
[ "$(echo "$out" | status)" = 201 ] || fail "creating a volume through node 2: $out"
answered=$(since "$t0")
for n in 1 3; do
  for i in $(seq 1 50); do
    [ "$(api "$n" GET /volumes | body | json '",".join(v["name"] for v in d)')" = vol-a ] && break
    sleep 0.02
  done
done
everywhere=$(since "$t0")
wwns=$(for n in 1 2 3; do api "$n" GET /volumes/vol-a | body | json 'd["wwn"]'; done | sort -u)
[ "$(echo "$wwns" | wc -l)" = 1 ] || fail "the nodes disagree on vol-a's WWN: $wwns"
echo "   vol-a, created through node 2 (a follower): answered after $answered s, listed by all three nodes after $everywhere s, WWN $wwns on each"
pass "a volume created through a follower is listed by every node with the same WWN"

# Discovery through either node's portal lists the group's targets on both.
iscsi_port=$(free_port)
out=$(api 1 POST /target-groups "{\"name\":\"g1\",\"targets\":[{\"node\":\"node1\",\"portals\":[\"127.0.1.1:$iscsi_port\"]}]}")
[ "$(echo "$out" | status)" = 201 ] || fail "creating a group through node 1: $out"
out=$(api 2 POST /target-groups/g1/targets "{\"node\":\"node2\",\"portals\":[\"127.0.2.1:$iscsi_port\"]}")
[ "$(echo "$out" | status)" = 201 ] || fail "adding node 2's target through node 2: $out"
for n in 1 2; do
  for i in $(seq 1 25); do
    listed=$(iscsi-ls "iscsi://127.0.$n.1:$iscsi_port" 2>&1 | grep '^Target:' | sort || true)
    [ "$(echo "$listed" | grep -c 'Portal:127.0.[12].1')" = 2 ] && break
    sleep 0.2
  done
  echo "$listed" | sed "s/^/   through node $n: /"
  grep -q "Portal:127.0.1.1:$iscsi_port" <<<"$listed" && grep -q "Portal:127.0.2.1:$iscsi_port" <<<"$listed" \
    || fail "discovery through node $n does not list both nodes' targets"
done
pass "SendTargets through either node's portal lists the group's targets on both nodes, each with its portal"

# Maintenance: node 2's target stops and nothing new is placed on it.
out=$(api 1 PATCH /nodes/node2 '{"maintenance":true}')
[ "$(echo "$out" | status)" = 200 ] || fail "putting node 2 into maintenance: $out"
for i in $(seq 1 25); do
  listed=$(iscsi-ls "iscsi://127.0.1.1:$iscsi_port" 2>&1 | grep '^Target:' || true)
  [ "$(echo "$listed" | grep -c '^Target:')" = 1 ] && break
  sleep 0.2
done
grep -q "Portal:127.0.1.1:$iscsi_port" <<<"$listed" && ! grep -q "127.0.2.1" <<<"$listed" \
  || fail "with node 2 in maintenance, discovery through node 1 lists: $listed"
iscsi-ls "iscsi://127.0.2.1:$iscsi_port" >/dev/null 2>&1 && fail "node 2's portal still answers in maintenance"
out=$(api 2 POST /volumes '{"name":"vol-m","size":"4MiB","node":"node2"}')
[ "$(echo "$out" | status)" = 409 ] || fail "a volume was placed on node 2 in maintenance: $out"
echo "   $(echo "$out" | body | json 'd["message"]')"
# Another program takes node 2's portal meanwhile: node 2 leaves it out and
# every node shows why.
python3 -c "import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.2.1', $iscsi_port)); s.listen(); time.sleep(120)" &
squatter=$!
sleep 0.5
out=$(api 1 PATCH /nodes/node2 '{"maintenance":false}')
[ "$(echo "$out" | status)" = 200 ] || fail "taking node 2 out of maintenance: $out"
problems=""
for i in $(seq 1 25); do
  problems=$(api 1 GET /nodes/node2 | body | json '"; ".join(p["object"] + ": " + p["reason"] for p in d["engine_problems"])')
  [ -n "$problems" ] && break
  sleep 0.2
done
echo "   node 1 shows node 2's engine status: $problems"
grep -q "portal/127.0.2.1:$iscsi_port" <<<"$problems" || fail "node 2's lost portal is not shown on node 1"
kill "$squatter"; wait "$squatter" 2>/dev/null || true
# The next change anywhere in the cluster makes node 2 try again.
out=$(api 1 POST /volumes '{"name":"vol-n","size":"4MiB","node":"node1"}')
[ "$(echo "$out" | status)" = 201 ] || fail "creating vol-n: $out"
for i in $(seq 1 25); do
  n=$(iscsi-ls "iscsi://127.0.2.1:$iscsi_port" 2>&1 | grep -c '^Target:' || true)
  [ "$n" = 2 ] && break
  sleep 0.2
done
[ "$n" = 2 ] || fail "node 2's portal did not come back after maintenance"
for i in $(seq 1 25); do
  problems=$(api 1 GET /nodes/node2 | body | json 'len(d["engine_problems"])')
  [ "$problems" = 0 ] && break
  sleep 0.2
done
[ "$problems" = 0 ] || fail "node 1 still shows problems of node 2's engine"
pass "in maintenance node 2's target stops, discovery elsewhere leaves it out, and nothing new is placed on it; out of it, a taken portal is shown on node 1 as node 2's engine status, and once free it is back"

# A group across three nodes with a LUN: the same port groups through every
# port, one of them active/optimized (node 2's, which holds vol-a).
out=$(api 3 POST /target-groups/g1/targets "{\"node\":\"node3\",\"portals\":[\"127.0.3.1:$iscsi_port\"]}")
[ "$(echo "$out" | status)" = 201 ] || fail "adding node 3's target: $out"
out=$(api 1 POST /target-groups/g1/luns '{"volume":"vol-a","lun":0}')
[ "$(echo "$out" | status)" = 201 ] || fail "attaching vol-a to g1: $out"
alua() { timeout 30 "$aluatool" --portal "127.0.$1.1:$iscsi_port" --target "iqn.2026-11.local.portico:g1.node$1" "${@:2}"; }
# expect_groups TRIES EXPECTED NODE...: REPORT TARGET PORT GROUPS through
# each node's port answers EXPECTED within TRIES tries 0.2 s apart.
expect_groups() {
  local tries=$1 expected=$2 n i groups
  for n in "${@:3}"; do
    for i in $(seq 1 "$tries"); do
      groups=$(alua "$n" rtpg 2>&1 || true)
      [ "$groups" = "$expected" ] && break
      sleep 0.2
    done
    echo "   REPORT TARGET PORT GROUPS through node $n: $groups"
    [ "$groups" = "$expected" ] || fail "node $n reports '$groups', not '$expected'"
  done
}
for n in 1 2 3; do
  for i in $(seq 1 25); do
    listed=$(iscsi-ls "iscsi://127.0.$n.1:$iscsi_port" 2>&1 | grep '^Target:' | sort || true)
    [ "$(echo "$listed" | grep -c 'Portal:127.0.[123].1')" = 3 ] && break
    sleep 0.2
  done
  [ "$(echo "$listed" | grep -c 'Portal:127.0.[123].1')" = 3 ] || fail "discovery through node $n lists: $listed"
done
echo "   through node 3: $(echo "$listed" | tr '\n' ' ')"
# vol-a was created on node 2: its group is the preferred one (the PREF bit).
expect_groups 25 "tpg 1 standby ports [1]; tpg 2 active-optimized preferred ports [2]; tpg 3 standby ports [3]" 1 2 3
for n in 1 3; do
  read=$(alua "$n" read)
  echo "   a read through node $n (standby): $read"
  [ "$read" = "CHECK CONDITION, sense 2/04/0b" ] || fail "a read through standby node $n: $read"
done
read=$(alua 2 read)
echo "   a read through node 2 (active/optimized): $read"
[ "$read" = "GOOD, 512 bytes" ] || fail "a read through node 2: $read"
pass "a group with a target on each node: every portal lists the 3 targets, REPORT TARGET PORT GROUPS is the same through all 3 ports, the standby ports refuse a read with 04h/0Bh and node 2's serves it"
# Reservation commands through a standby port run on node 2, which serves vol-a.
pr() { timeout 30 "$prtool" --portal "127.0.$1.1:$iscsi_port" --target "iqn.2026-11.local.portico:g1.node$1" "${@:2}"; }
line=$(pr 1 register c1) || fail "REGISTER through node 1: $line"
echo "   through node 1 (standby): $line"
line=$(pr 1 reserve c1 1) || fail "RESERVE through node 1: $line"
echo "   through node 1 (standby): $line"
for n in 1 2 3; do
  line=$(pr "$n" read-reservation)
  echo "   READ RESERVATION through node $n: $line"
  grep -q "reservation key 0xc1, type 1" <<<"$line" || fail "node $n does not show the reservation made through node 1: $line"
done
line=$(pr 3 read-keys); echo "   READ KEYS through node 3 (standby): $line"
grep -q "keys \[0xc1\]" <<<"$line" || fail "READ KEYS through node 3: $line"
line=$(pr 3 clear c3) || fail "CLEAR through node 3: $line"
echo "   through node 3 (standby): $line"
line=$(pr 2 read-reservation); echo "   READ RESERVATION through node 2: $line"
grep -q "no reservation" <<<"$line" || fail "the CLEAR through node 3 did not reach node 2: $line"
pass "reservation commands through the standby ports of nodes 1 and 3 run on node 2, which serves vol-a: every port reads the same reservation and keys"
# Back to the group as it was, so that vol-a can be deleted and node 3 removed later.
out=$(api 1 DELETE /target-groups/g1/luns/0)
[ "$(echo "$out" | status)" = 204 ] || fail "detaching vol-a: $out"
out=$(api 1 DELETE "/target-groups/g1/targets/iqn.2026-11.local.portico:g1.node3")
[ "$(echo "$out" | status)" = 204 ] || fail "removing node 3's target: $out"

# Placement: a volume named for node 3 through node 1 is judged and made
# there; one without a node goes on an online node with the most room.
out=$(api 1 POST /volumes '{"name":"vol-p","size":"4MiB","node":"node3"}')
[ "$(echo "$out" | status)" = 201 ] || fail "creating vol-p on node 3 through node 1: $out"
for i in $(seq 1 25); do [ -f "$work/data3/volumes/vol-p.img" ] && break; sleep 0.2; done
[ -f "$work/data3/volumes/vol-p.img" ] || fail "vol-p's image is not on node 3"
[ -e "$work/data1/volumes/vol-p.img" ] && fail "vol-p's image is on node 1 too"
out=$(api 1 POST /volumes '{"name":"vol-q","size":"4MiB","node":"node9"}')
[ "$(echo "$out" | status)" = 422 ] || fail "a volume for an unknown node: $out"
echo "   vol-p, named for node 3 through node 1: node 2 lists it on $(api 2 GET /volumes/vol-p | body | json 'd["node"]')"
out=$(api 1 DELETE /volumes/vol-p)
[ "$(echo "$out" | status)" = 204 ] || fail "deleting vol-p: $out"
for i in $(seq 1 25); do [ -e "$work/data3/volumes/vol-p.img" ] || break; sleep 0.2; done
if [ -e "$work/data3/volumes/vol-p.img" ]; then fail "vol-p was deleted through node 1, but its image stays on node 3"; fi
# No node named: an online node with the most room takes it, and only it has the image.
out=$(api 2 POST /volumes '{"name":"vol-r","size":"4MiB"}')
[ "$(echo "$out" | status)" = 201 ] || fail "creating vol-r with no node named: $out"
placed=$(api 3 GET /volumes/vol-r | body | json 'd["node"]')
case "$placed" in node1|node2|node3) ;; *) fail "vol-r is on '$placed'" ;; esac
n=${placed#node}
for i in $(seq 1 25); do [ -f "$work/data$n/volumes/vol-r.img" ] && break; sleep 0.2; done
[ -f "$work/data$n/volumes/vol-r.img" ] || fail "vol-r is placed on $placed, but its image is not there"
for m in 1 2 3; do
  if [ "$m" != "$n" ] && [ -e "$work/data$m/volumes/vol-r.img" ]; then fail "vol-r's image is on node $m too"; fi
done
echo "   vol-r, with no node named, created through node 2: placed on $placed, its image there only"
# The audit log is the cluster's: node 3 lists what was done through node 2.
audited=""
for i in $(seq 1 50); do
  audited=$(api 3 GET '/audit?per_page=200' | body | json '" ".join(e["node"] for e in d["entries"] if e["action"] == "volume.create" and e["object"] == "volume/vol-r")')
  [ "$audited" = node2 ] && break
  sleep 0.2
done
[ "$audited" = node2 ] || fail "node 3's audit log does not list vol-r's creation through node 2 (got '$audited')"
echo "   node 3's audit log lists vol-r's creation, through node2"
out=$(api 2 DELETE /volumes/vol-r)
[ "$(echo "$out" | status)" = 204 ] || fail "deleting vol-r: $out"
pass "a volume named for node 3 through node 1 has its image on node 3 only, and loses it there when deleted; an unknown node is refused with 422; a volume with no node named goes on one node, with its image; another node's audit log lists its creation"

# 4. kill -9 of the leader.
kill -9 "${pid[1]}"
wait "${pid[1]}" 2>/dev/null || true
unset 'pid[1]'
t0=$(date +%s.%N)
# A change made at once waits for the new leader, then commits.
out=$(api 3 POST /volumes '{"name":"vol-b","size":"4MiB","node":"node3"}')
[ "$(echo "$out" | status)" = 201 ] || fail "creating a volume without node 1: $out"
committed=$(since "$t0")
new_leader=""
for i in $(seq 1 100); do
  a=$(api 2 GET /cluster | body | json 'd["leader"]' 2>/dev/null || true)
  b=$(api 3 GET /cluster | body | json 'd["leader"]' 2>/dev/null || true)
  if [ -n "$a" ] && [ "$a" != None ] && [ "$a" != 1 ] && [ "$a" = "$b" ]; then new_leader=$a; break; fi
  sleep 0.1
done
[ -n "$new_leader" ] || fail "no new leader 10 s after the leader was killed"
echo "   node 1 killed (kill -9); a change sent at once through node 3 was committed after $committed s (bound: 5 s); node $new_leader leads"
python3 -c "import sys; sys.exit(0 if float('$committed') <= 5 else 1)" || fail "the change took $committed s, more than 5"
took=$(wait_state "$new_leader" node1 offline 10)
echo "   node $new_leader marks node 1 offline $took s after the new leader was seen (bound: 4 s of silence)"
seen=$(api "$new_leader" GET /nodes/node1 | body)
[ "$(echo "$seen" | json 'd["applied_index"]')" = None ] || fail "node 1, killed, still reports an applied index"
echo "   node $new_leader on node 1: $(echo "$seen" | json 'd["state"] + ", last heartbeat answered " + str(d["last_contact_ms"]) + " ms ago (as this leader heard it)"')"
pass "the two survivors elected node $new_leader and take changes"

start 1
ready 1
for i in $(seq 1 50); do
  names=$(api 1 GET /volumes | body | json '",".join(sorted(v["name"] for v in d))' 2>/dev/null || true)
  [ "$names" = "vol-a,vol-b,vol-n" ] && break
  sleep 0.2
done
[ "$names" = "vol-a,vol-b,vol-n" ] || fail "node 1 restarted lists '$names'"
took=$(wait_state "$new_leader" node1 online 30)
echo "   node 1 is online again $took s after it answered (bound: 10 s of steady answers)"
role=$(api 1 GET /cluster | body | json 'd["role"]')
for i in $(seq 1 25); do
  applied=$(api "$new_leader" GET /nodes | body | json '",".join(sorted(set(str(x["applied_index"]) for x in d)))')
  case "$applied" in *,*|*None*) sleep 0.2 ;; *) break ;; esac
done
case "$applied" in *,*|*None*) fail "the nodes' applied indexes differ: $applied" ;; esac
echo "   all three nodes at applied index $applied"
pass "node 1, restarted, caught up to the same applied index (it lists vol-b, made while it was down) and is a $role"

# kill -9 of a follower (node 1 again, now a follower).
[ "$role" = follower ] || fail "node 1 is a $role, not a follower"
kill -9 "${pid[1]}"; wait "${pid[1]}" 2>/dev/null || true; unset 'pid[1]'
took=$(wait_state "$new_leader" node1 offline 10)
echo "   node 1, a follower, killed (kill -9): offline after $took s (bound: 6 s)"
python3 -c "import sys; sys.exit(0 if float('$took') <= 6 else 1)" || fail "offline after $took s, more than 6"
# It comes back at another cluster address: it tells the members, and the
# leader reaches it there.
moved="127.0.1.1:$(free_port)"
CLUSTER_ADDR=$moved start 1
ready 1
took=$(wait_state "$new_leader" node1 online 20)
echo "   node 1 restarted at cluster address $moved: online $took s after it answered (bound: 15 s)"
python3 -c "import sys; sys.exit(0 if float('$took') <= 15 else 1)" || fail "online after $took s, more than 15"
for n in 1 "$new_leader"; do
  listed=$(api "$n" GET /nodes | body | json "next(x['cluster_addr'] for x in d if x['name'] == 'node1')")
  [ "$listed" = "$moved" ] || fail "node $n lists node 1 at '$listed', not $moved"
done
out=$(api "$new_leader" POST /volumes '{"name":"vol-s","size":"4MiB","node":"node1"}')
[ "$(echo "$out" | status)" = 201 ] || fail "creating vol-s on node 1 at its new address: $out"
for i in $(seq 1 25); do [ -f "$work/data1/volumes/vol-s.img" ] && break; sleep 0.2; done
[ -f "$work/data1/volumes/vol-s.img" ] || fail "vol-s's image is not on node 1"
out=$(api 1 DELETE /volumes/vol-s)
[ "$(echo "$out" | status)" = 204 ] || fail "deleting vol-s: $out"
pass "a follower killed is offline within 6 s; restarted at a new cluster address, it is online again within 15 s, listed there, and takes a volume placed on it"

# A volume deleted through another node than the one holding it.
[ -f "$work/data2/volumes/vol-a.img" ] || fail "vol-a's image is not on node 2, which holds it"
out=$(api 1 DELETE /volumes/vol-a)
[ "$(echo "$out" | status)" = 204 ] || fail "deleting vol-a through node 1: $out"
for i in $(seq 1 25); do [ -e "$work/data2/volumes/vol-a.img" ] || break; sleep 0.2; done
[ -e "$work/data2/volumes/vol-a.img" ] && fail "vol-a's image stayed on node 2"
pass "a volume deleted through node 1 loses its image on node 2, which held it"

# 6. (before 5, while three nodes run) A volume with two copies (CLUSTER.md
# §2): primary on node 1, its other copy placed by room on node 2 or 3.
echo "-- a replicated volume"
out=$(api 2 POST /volumes '{"name":"vol-r2","size":"64MiB","replicas":2,"node":"node1"}')
[ "$(echo "$out" | status)" = 201 ] || fail "creating vol-r2 with 2 copies: $out"
copy=$(api 3 GET /volumes/vol-r2 | body | json 'd["copies"][0]["node"]')
c=${copy#node}
case "$c" in 2|3) ;; *) fail "vol-r2's other copy is on '$copy'" ;; esac
out=$(api 1 POST /target-groups/g1/luns '{"volume":"vol-r2","lun":0}')
[ "$(echo "$out" | status)" = 201 ] || fail "attaching vol-r2: $out"
# copy_link: how node 1, the primary, sees the copy's stream.
copy_link() { api 1 GET /volumes/vol-r2 | body | json 'd["state"] + " " + str(d["copies"][0]["link"]) + " " + str(d["copies"][0]["in_sync"])'; }
for i in $(seq 1 50); do [ "$(copy_link)" = "healthy in-sync True" ] && break; sleep 0.2; done
[ "$(copy_link)" = "healthy in-sync True" ] || fail "vol-r2 is not healthy with its copy on $copy: $(copy_link)"
echo "   vol-r2: primary on node 1, the other copy on $copy (the online node with the most room), stream open"
write() { timeout 60 "$writebench" --portal "127.0.1.1:$iscsi_port" --target "iqn.2026-11.local.portico:g1.node1" "$@"; }
errors() { awk '{for (i = 2; i <= NF; i++) if ($i == "errors,") print $(i - 1)}' | tr -d '(,'; }
images() { sha256sum "$work/data1/volumes/vol-r2.img" "$work/data$c/volumes/vol-r2.img" | awk '{print $1}' | uniq | wc -l; }
line=$(write --mib 32 --size 131072 --depth 16)
echo "   $line"
[ "$(errors <<<"$line")" = 0 ] || fail "writes to vol-r2 failed"
[ "$(images)" = 1 ] || fail "the two images of vol-r2 differ after 32 MiB"
pass "32 MiB written through node 1's port: both copies of vol-r2 are equal"

kill -9 "${pid[$c]}"; wait "${pid[$c]}" 2>/dev/null || true; unset "pid[$c]"
# A write that ends NOT READY, transitioning (the copy's node may be the Raft
# leader: until a new one is elected, node 1 may lose its lease) is sent
# again, as a multipathing host does; its wait counts in the longest.
line=$(write --seconds 4 --size 4096 --depth 8 --random --span-mib 8 --seed 3 --retry-not-ready 10)
echo "   $line"
[ "$(errors <<<"$line")" = 0 ] || fail "writes to vol-r2 failed without its copy"
for i in $(seq 1 25); do [ "$(copy_link)" = "degraded out-of-sync False" ] && break; sleep 0.2; done
[ "$(copy_link)" = "degraded out-of-sync False" ] || fail "vol-r2 without its copy: $(copy_link)"
grep -q "volume.copy.out_of_sync" <<<"$(api 1 GET "/audit?per_page=200" | body)" || fail "the mark is not in the audit log"
pass "$copy killed (kill -9): writes went on (longest wait $(sed -n 's/.*longest \([0-9]*\) ms.*/\1/p' <<<"$line") ms) once the cluster marked the copy out of sync; vol-r2 is degraded"

start "$c"
ready "$c"
t0=$(date +%s.%N)
for i in $(seq 1 300); do [ "$(copy_link)" = "healthy in-sync True" ] && break; sleep 0.2; done
[ "$(copy_link)" = "healthy in-sync True" ] || fail "vol-r2 did not come back in sync: $(copy_link)"
insync=$(grep "replica back in sync" "$work/node1.log" | tail -n 1 | sed 's/\x1b\[[0-9;]*m//g')
copied=$(sed -n 's/.*copied_bytes=\([0-9]*\).*/\1/p' <<<"$insync")
[ "$(images)" = 1 ] || fail "the two images of vol-r2 differ after the resync"
echo "   $copy restarted: back in sync after $(since "$t0") s, ${copied:-?} bytes copied (the writes covered 8 MiB of 64 MiB)"
[ -n "$copied" ] && [ "$copied" -le $((16 << 20)) ] || fail "the resync copied ${copied:-?} bytes, more than the changed part"
pass "$copy resynced only what changed; vol-r2 is healthy and both images are equal"

# The lease: node 1, cut off from both other nodes (SIGSTOP), stops
# serving vol-r2 within 3 s of last hearing from a majority. A ledger
# workload runs across it on both paths of g1.
"$ledger" --path "127.0.1.1:$iscsi_port=iqn.2026-11.local.portico:g1.node1" \
  --path "127.0.2.1:$iscsi_port=iqn.2026-11.local.portico:g1.node2" \
  --blocks 2048 --seconds 14 --volume vol-r2 >"$work/ledger.txt" 2>&1 &
ledger_pid=$!
sleep 2
kill -STOP "${pid[2]}" "${pid[3]}"
t0=$(date +%s.%N)
for i in $(seq 1 50); do read=$(alua 1 read); [ "$read" = "CHECK CONDITION, sense 2/04/0a" ] && break; sleep 0.2; done
took=$(since "$t0")
kill -CONT "${pid[2]}" "${pid[3]}"
echo "   nodes 2 and 3 stopped (SIGSTOP): a read of vol-r2 through node 1 is refused $took s later: $read"
[ "$read" = "CHECK CONDITION, sense 2/04/0a" ] || fail "node 1 served vol-r2 without a majority: $read"
t0=$(date +%s.%N)
for i in $(seq 1 50); do read=$(alua 1 read); [ "$read" = "GOOD, 512 bytes" ] && break; sleep 0.2; done
[ "$read" = "GOOD, 512 bytes" ] || fail "node 1 does not serve vol-r2 again after SIGCONT: $read"
echo "   SIGCONT: node 1 serves vol-r2 again $(since "$t0") s later"
wait "$ledger_pid" || fail "the ledger across the stop: $(cat "$work/ledger.txt")"
echo "   $(cat "$work/ledger.txt")"
for i in $(seq 1 150); do [ "$(copy_link)" = "healthy in-sync True" ] && break; sleep 0.2; done
[ "$(copy_link)" = "healthy in-sync True" ] || fail "vol-r2 after the stop: $(copy_link)"
[ "$(images)" = 1 ] || fail "the two images of vol-r2 differ after the stop"
pass "cut off from the majority, node 1 stops serving vol-r2 within its 3 s lease (NOT READY, transitioning), and serves it again once the cluster is whole; the ledger across it lost no acknowledged write"

# Active/non-optimized other paths: node 2's port serves a replicated
# volume by sending each command to node 1, so libiscsi's MultipathIO
# tests, which write through each path and read through the other, pass
# across the two nodes. They get a new volume, vol-mp: MultipathIO's
# CompareAndWrite zeroes blocks 0-255 and then expects zeros in block 256
# too, which only a volume never written has.
out=$(api 1 POST /volumes '{"name":"vol-mp","size":"8MiB","replicas":2,"node":"node1"}')
[ "$(echo "$out" | status)" = 201 ] || fail "creating vol-mp with 2 copies: $out"
mp_copy=$(api 1 GET /volumes/vol-mp | body | json 'd["copies"][0]["node"]')
out=$(api 1 POST /target-groups/g1/luns '{"volume":"vol-mp","lun":1}')
[ "$(echo "$out" | status)" = 201 ] || fail "attaching vol-mp: $out"
for i in $(seq 1 100); do [ "$(healthy vol-mp)" = yes ] && break; sleep 0.2; done
[ "$(healthy vol-mp)" = yes ] || fail "vol-mp is not healthy: $(healthy vol-mp)"
out=$(api 2 PATCH /target-groups/g1 '{"other_paths":"active-non-optimized"}')
[ "$(echo "$out" | status)" = 200 ] || fail "setting g1's other paths active/non-optimized: $out"
expect_groups 50 "tpg 1 active-optimized preferred ports [1]; tpg 2 active-non-optimized ports [2]" 1 2
read=$(alua 2 read)
echo "   a read of vol-r2 through node 2 (active/non-optimized): $read"
[ "$read" = "GOOD, 512 bytes" ] || fail "a read through node 2's active/non-optimized port: $read"
"$scorer" "iscsi://127.0.1.1:$iscsi_port/iqn.2026-11.local.portico:g1.node1/1" \
  --multipath "iscsi://127.0.2.1:$iscsi_port/iqn.2026-11.local.portico:g1.node2/1" \
  --tests 'ALL.MultipathIO' --json "$work/multipath.json" --log "$work/multipath.log" | tail -n 1 |
  sed "s/^/   MultipathIO through nodes 1 and 2, vol-mp's other copy on $mp_copy: /"
counts=$(python3 -c 'import json, sys; c = json.load(open(sys.argv[1]))["counts"]; print(c["passed"], c["failed"], c["skipped"])' "$work/multipath.json")
if [ "$counts" != "4 0 0" ]; then
  python3 -c 'import json, sys; print("   not passed:", [t for t, v in json.load(open(sys.argv[1]))["tests"].items() if v != "passed"])' "$work/multipath.json"
  grep -v '^\[OK\]' "$work/multipath.log" | grep -i -B2 -A8 'fail' | tail -n 60
  fail "MultipathIO through nodes 1 and 2: passed, failed, skipped = $counts (want 4 0 0)"
fi
for i in $(seq 1 100); do [ "$(healthy vol-mp)" = yes ] && break; sleep 0.2; done
m=${mp_copy#node}
[ "$(sha256sum "$work/data1/volumes/vol-mp.img" "$work/data$m/volumes/vol-mp.img" | awk '{print $1}' | uniq | wc -l)" = 1 ] ||
  fail "the two images of vol-mp differ after the MultipathIO tests"
out=$(api 1 PATCH /target-groups/g1 '{"other_paths":"standby"}')
[ "$(echo "$out" | status)" = 200 ] || fail "setting g1's other paths back to standby: $out"
for i in $(seq 1 50); do read=$(alua 2 read); [ "$read" = "CHECK CONDITION, sense 2/04/0b" ] && break; sleep 0.2; done
[ "$read" = "CHECK CONDITION, sense 2/04/0b" ] || fail "node 2's port, standby again, answers a read: $read"
out=$(api 1 DELETE /target-groups/g1/luns/1)
[ "$(echo "$out" | status)" = 204 ] || fail "detaching vol-mp: $out"
out=$(api 1 DELETE /volumes/vol-mp)
[ "$(echo "$out" | status)" = 204 ] || fail "deleting vol-mp: $out"
pass "g1's other paths active/non-optimized: node 2's port serves node 1's volumes, libiscsi's MultipathIO tests pass through the two nodes' targets of a replicated volume (4 of 4), its images stay equal; standby again, node 2's port refuses a read"

# Online: a third copy, then back to two.
t=$((5 - c))
out=$(api 2 PATCH /volumes/vol-r2 '{"replicas":3}')
[ "$(echo "$out" | status)" = 200 ] || fail "giving vol-r2 a third copy: $out"
states() { api 1 GET /volumes/vol-r2 | body | json '" ".join(sorted(c["node"] + "=" + str(c["link"]) for c in d["copies"])) + " " + d["state"]'; }
t0=$(date +%s.%N)
for i in $(seq 1 300); do [ "$(states)" = "node2=in-sync node3=in-sync healthy" ] && break; sleep 0.2; done
[ "$(states)" = "node2=in-sync node3=in-sync healthy" ] || fail "vol-r2 with 3 copies: $(states)"
sums=$(sha256sum "$work"/data{1,2,3}/volumes/vol-r2.img | awk '{print $1}' | uniq | wc -l)
[ "$sums" = 1 ] || fail "the three images of vol-r2 differ"
echo "   vol-r2 given a third copy (on node$t) online: in sync after $(since "$t0") s, the three images equal"
out=$(api 3 PATCH /volumes/vol-r2 '{"replicas":2}')
[ "$(echo "$out" | status)" = 200 ] || fail "taking vol-r2 back to 2 copies: $out"
left=$(api 1 GET /volumes/vol-r2 | body | json '" ".join(c["node"] for c in d["copies"])')
[ "$left" = node2 ] || fail "vol-r2 back to 2 copies keeps '$left', not node2 (the newest node's copy goes)"
for i in $(seq 1 25); do [ -e "$work/data3/volumes/vol-r2.img" ] || break; sleep 0.2; done
[ -e "$work/data3/volumes/vol-r2.img" ] && fail "the copy taken away stayed on node 3"
for i in $(seq 1 100); do [ "$(copy_link)" = "healthy in-sync True" ] && break; sleep 0.2; done
[ "$(copy_link)" = "healthy in-sync True" ] || fail "vol-r2 back to 2 copies: $(copy_link)"
c=2
pass "vol-r2 went to 3 copies and back to 2 online: the new copy resynced in full, the one taken away lost its image"

# Grown online, then written in its new part: both copies grow alike.
out=$(api 3 PATCH /volumes/vol-r2 '{"size":"96MiB"}')
[ "$(echo "$out" | status)" = 200 ] || fail "growing vol-r2: $out"
for i in $(seq 1 25); do
  [ "$(stat -c %s "$work/data1/volumes/vol-r2.img")" = $((96 << 20)) ] && [ "$(stat -c %s "$work/data2/volumes/vol-r2.img")" = $((96 << 20)) ] && break
  sleep 0.2
done
line=$(write --mib 16 --size 131072 --depth 16 --offset-mib 72 --span-mib 24)
echo "   $line"
[ "$(errors <<<"$line")" = 0 ] || fail "writes to vol-r2's new part failed"
[ "$(copy_link)" = "healthy in-sync True" ] || fail "vol-r2 after growing: $(copy_link)"
[ "$(images)" = 1 ] || fail "the two images of vol-r2 differ after it grew"
pass "vol-r2 grown from 64 to 96 MiB online: both images are 96 MiB, and equal after 16 MiB written in the new part"

# Its copy's node gone for good: the copy is made again on node 3.
kill -9 "${pid[2]}"; wait "${pid[2]}" 2>/dev/null || true; unset 'pid[2]'
t0=$(date +%s.%N)
# Node 2 may be the Raft leader by now (it was elected in part 4, and any
# node may be after the SIGSTOP): until a new leader is elected, node 1's
# lease may run out, so a write that ends NOT READY, transitioning, is sent
# again, as a multipathing host does.
line=$(write --seconds 2 --size 4096 --depth 8 --random --offset-mib 80 --span-mib 8 --seed 7 --retry-not-ready 10)
[ "$(errors <<<"$line")" = 0 ] || fail "writes to vol-r2 failed without node 2"
rebuilt() { api 1 GET /volumes/vol-r2 | body | json '" ".join(c["node"] + "=" + str(c["link"]) for c in d["copies"]) + " " + d["state"]'; }
for i in $(seq 1 400); do [ "$(rebuilt)" = "node3=in-sync healthy" ] && break; sleep 0.2; done
[ "$(rebuilt)" = "node3=in-sync healthy" ] || fail "vol-r2's copy was not rebuilt on node 3: $(rebuilt)"
took=$(since "$t0")
c=3
[ "$(images)" = 1 ] || fail "the rebuilt copy on node 3 differs from the primary's"
detail=$(api 1 GET '/audit?per_page=200' | body | json 'next(e["detail"] for e in d["entries"] if e["action"] == "volume.copy.rebuild")')
echo "   node 2 killed: vol-r2's copy rebuilt on node 3 and in sync $took s later (rebuild after ${rebuild_after} s offline); audited: $detail"
start 2
ready 2
# Back, node 2 catches up with the cluster and lets go of its old copy.
for i in $(seq 1 100); do [ -e "$work/data2/volumes/vol-r2.img" ] || break; sleep 0.2; done
[ -e "$work/data2/volumes/vol-r2.img" ] && fail "node 2 kept the image of the copy rebuilt elsewhere"
echo "   node 2 restarted: it removed the files of its old copy once it caught up"
pass "a copy whose node stayed offline longer than --rebuild-after is made again on another node, resynced, and equal"
out=$(api 1 DELETE /target-groups/g1/luns/0)
[ "$(echo "$out" | status)" = 204 ] || fail "detaching vol-r2: $out"
out=$(api 3 DELETE /volumes/vol-r2)
[ "$(echo "$out" | status)" = 204 ] || fail "deleting vol-r2: $out"
for i in $(seq 1 25); do [ -e "$work/data$c/volumes/vol-r2.img" ] || break; sleep 0.2; done
[ -e "$work/data$c/volumes/vol-r2.img" ] && fail "vol-r2's copy stayed on node$c"
pass "vol-r2 deleted: its image is gone from node$c too"

# 5. An admin removes node 3 (the leader, as it happens, or not): first it
# must give up what it holds.
out=$(api 1 DELETE /nodes/node3)
[ "$(echo "$out" | status)" = 409 ] || fail "node 3 was removed while it held vol-b: $out"
out=$(api 3 DELETE /volumes/vol-b)
[ "$(echo "$out" | status)" = 204 ] || fail "deleting vol-b through node 3: $out"
out=$(api 1 DELETE /nodes/node3)
[ "$(echo "$out" | status)" = 204 ] || fail "removing node 3: $out"
kill -9 "${pid[3]}"; wait "${pid[3]}" 2>/dev/null || true; unset 'pid[3]'
for i in $(seq 1 50); do
  a=$(api 1 GET /cluster | body | json '",".join(str(m["raft_id"]) for m in sorted(d["members"], key=lambda m: m["raft_id"])) + " " + str(d["leader"])' 2>/dev/null || true)
  case "$a" in "1,2 1"|"1,2 2") break ;; esac
  sleep 0.2
done
case "$a" in "1,2 1"|"1,2 2") ;; *) fail "after removing node 3, node 1 sees members and leader '$a'" ;; esac
names=$(api 2 GET /nodes | body | json '",".join(x["name"] for x in d)')
[ "$names" = "node1,node2" ] || fail "node 2 lists nodes '$names'"
out=$(api 2 POST /volumes '{"name":"vol-c","size":"4MiB"}')
[ "$(echo "$out" | status)" = 201 ] || fail "a change after node 3 left: $out"
echo "   vol-c, no node named: placed on $(api 1 GET /volumes/vol-c | body | json 'd["node"]') (the online node with the most room)"
pass "node 3 is refused removal while it holds a volume, then removed: two members remain (leader ${a#* }), and they take changes"

echo "cluster: all checks passed"
