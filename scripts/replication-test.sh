#!/usr/bin/env bash
# Synchronous replication between three `portico engine` processes, one
# node each on 127.0.1.1, 127.0.2.1 and 127.0.3.1, with faults made for real
# (CLUSTER.md §2). One volume, r1 (128 MiB), is kept on all three nodes:
# node 1 primary at epoch 1, nodes 2 and 3 replicas, min_in_sync 2. Checks,
# printing each result:
#
#  1. after 64 MiB written through the primary, the three images are equal;
#  1b. node 1's stream to node 2 (through a fault proxy) made slow (20 ms
#     each way), then lossy (10% of chunks sent again 200 ms later): the
#     writes go on, slower, and node 2 stays in sync; then one-way, first
#     node 2's answers held, then node 1's frames: node 2 is marked out of
#     sync within the link's silence timeout, the writes go on, and once the
#     link passes again node 2 gets only what it missed; the images end
#     equal;
#  2. kill -9 of a replica in the middle of writes: the writes go on (the
#     longest wait for one is printed), and once it is restarted it gets only
#     the regions written while it was away (the bytes copied are printed),
#     and the images end equal; then kill -9 of the primary in the middle of
#     writes: restarted, it has both replicas marked out of sync (what it had
#     in flight may be on some copies only) and resyncs them by comparing
#     checksums, sending only the regions that differ; the images end equal;
#  3. a REGISTER and RESERVE through the primary; then a write through it
#     that reaches node 3 and not node 2 (node 1's stream to node 2 runs
#     through a proxy that holds it), and kill -9 of node 1 with the write
#     in flight; nodes 2 and 3 apply epoch 2 with node 2 as primary
#     (SIGHUP): node 2 reconciles node 3 by the activity logs (node 3's
#     names the region of that write) and copies only those regions; the
#     images are equal, and READ RESERVATION through node 2 shows the
#     reservation; node 1, restarted with epoch 1, gets no write accepted
#     and the images do not change;
#  4. writes through the new primary reach node 3, and libiscsi's
#     persistent-reservation and COMPARE AND WRITE families pass against it.
#
# The whole conformance suite against a replicated volume is part of
# scripts/conformance.sh; SYNCHRONIZE CACHE reaching every replica's disk is
# counted in target-engine/tests/replication.rs.
#
# usage: scripts/replication-test.sh PORTICO_BINARY
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
portico=${1:?usage: replication-test.sh PORTICO_BINARY}
. "$here/scripts/env.sh"
shared="${PORTICO_SHARED_DIR:-$here/../shared}"
[ -d "$shared/tools" ] || shared=/work/shared
scorer="$shared/tools/iscsi-conformance"

cargo build -q -p target-engine --features test-util --example writebench --example prtool --example faultproxy
bench="$CARGO_TARGET_DIR/debug/examples/writebench"
prtool="$CARGO_TARGET_DIR/debug/examples/prtool"
faultproxy="$CARGO_TARGET_DIR/debug/examples/faultproxy"

work=$(mktemp -d /dev/shm/portico-replication.XXXXXX)
# The cluster's replication key: the same file for every node.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/replication.key"
declare -A pid
cleanup() {
  for n in "${!pid[@]}"; do kill -9 "${pid[$n]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; for n in 1 2 3; do echo "--- node $n log (last 20 lines)"; tail -n 20 "$work/node$n.log" 2>/dev/null; done; exit 1; }
pass() { echo "ok: $*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
iscsi_port=$(free_port)
repl_port=$(free_port)
proxy_port=$(free_port)
control_port=$(free_port)
# Where node 1 reaches node 2's replication listener (through the proxy, until step 3).
via2="127.0.0.1:$proxy_port"
iqn() { echo "iqn.2026-11.local.portico:node$1"; }

# config NODE EPOCH PRIMARY: the node's configuration for that placement.
config() {
  local me=$1 epoch=$2 primary=$3 replicas=() n in_sync
  for n in 1 2 3; do
    [ "$n" = "$primary" ] && continue
    # At epoch 2, node 1 (the old primary) has to be resynced before it counts.
    in_sync=true; [ "$epoch" = 2 ] && [ "$n" = 1 ] && in_sync=false
    address="127.0.$n.1:$repl_port"; [ "$me" = 1 ] && [ "$n" = 2 ] && address=$via2
    replicas+=("{ node = $n, address = \"$address\", in_sync = $in_sync }")
  done
  local IFS=,
  cat <<TOML
[replication]
node = $me
listen = "127.0.$me.1:$repl_port"
key_file = "$work/replication.key"

[[volume]]
name = "r1"
path = "$work/node$me.img"
size = "128MiB"
replication = { epoch = $epoch, primary = $primary, min_in_sync = 2, replicas = [ ${replicas[*]} ] }

[[target]]
iqn = "$(iqn "$me")"
portals = ["127.0.$me.1:$iscsi_port"]
luns = { 0 = "r1" }
TOML
}

start() { # NODE
  "$portico" engine --config "$work/node$1.toml" >>"$work/node$1.log" 2>&1 &
  pid[$1]=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.$1.1/$iscsi_port") 2>/dev/null && return 0
    kill -0 "${pid[$1]}" 2>/dev/null || fail "node $1 exited at start"
    sleep 0.1
  done
  fail "node $1 does not listen"
}

# wait_log NODE PATTERN SECONDS COUNT: until the node's log has COUNT lines matching.
wait_log() {
  local deadline=$((SECONDS + $3))
  while [ "$(grep -c -- "$2" "$work/node$1.log" || true)" -lt "${4:-1}" ]; do
    [ $SECONDS -lt $deadline ] || fail "node $1 never logged \"$2\" within $3 s"
    sleep 0.2
  done
}

write() { # NODE ARGS...: writebench through the node's target; prints its line
  local node=$1; shift
  timeout 120 "$bench" --portal "127.0.$node.1:$iscsi_port" --target "$(iqn "$node")" "$@"
}
field() { awk -v k="$1" '{for (i = 2; i <= NF; i++) if ($i == k) print $(i - 1)}' | tr -d '(,'; }
sums() { (cd "$work" && sha256sum node1.img node2.img node3.img) | awk '{print $1}'; }
pr() { # NODE ARGS...
  local node=$1; shift
  timeout 30 "$prtool" --portal "127.0.$node.1:$iscsi_port" --target "$(iqn "$node")" "$@"
}

for n in 1 2 3; do config "$n" 1 1 >"$work/node$n.toml"; done
"$faultproxy" --listen "$via2" --to "127.0.2.1:$repl_port" --control "127.0.0.1:$control_port" >"$work/proxy.log" 2>&1 &
pid[proxy]=$!
start 2; start 3; start 1
wait_log 1 "replication stream open" 20 2

echo "-- 1. 64 MiB through the primary"
line=$(write 1 --mib 64 --size 131072 --depth 16)
echo "   $line"
[ "$(field errors, <<<"$line")" = 0 ] || fail "writes failed"
mapfile -t s < <(sums)
echo "   sha256: node1 ${s[0]:0:16}…  node2 ${s[1]:0:16}…  node3 ${s[2]:0:16}…"
[ "${s[0]}" = "${s[1]}" ] && [ "${s[0]}" = "${s[2]}" ] || fail "the images differ after 64 MiB"
pass "64 MiB written, the three images are equal"

echo "-- 1b. a slow, a lossy and a one-way link from node 1 to node 2"
faults() { # COMMAND: sets the proxy's faults on node 1's stream to node 2
  local fd answer
  exec {fd}<>"/dev/tcp/127.0.0.1/$control_port"
  echo "$*" >&"$fd"; read -r answer <&"$fd"; exec {fd}>&-
  [ "$answer" = ok ] || fail "faultproxy: $* -> $answer"
}
plain() { sed 's/\x1b\[[0-9;]*m//g' "$work/node$1.log"; }
marked() { plain 1 | grep -c "replica marked out of sync.*replica=$1 " || true; }
insync() { plain 1 | grep -c "replica back in sync.*replica=$1 " || true; }
median() { sed -n 's/.*median \([0-9.]*\) ms.*/\1/p'; }
longest() { sed -n 's/.*longest \([0-9]*\) ms.*/\1/p'; }
faults delay 20
line=$(write 1 --seconds 3 --size 4096 --depth 1 --random --offset-mib 64 --span-mib 8 --seed 21)
echo "   delay 20 ms each way: $line"
[ "$(field errors, <<<"$line")" = 0 ] || fail "writes failed on a slow link"
awk -v m="$(median <<<"$line")" 'BEGIN { exit !(m >= 40) }' || fail "a write did not wait for node 2's answer (median $(median <<<"$line") ms)"
[ "$(marked 2)" = 0 ] || fail "node 2 was marked out of sync on a slow link"
pass "on a link 20 ms each way the writes wait for node 2 (median $(median <<<"$line") ms) and it stays in sync"
faults pass; faults loss 10
line=$(write 1 --seconds 3 --size 4096 --depth 4 --random --offset-mib 64 --span-mib 8 --seed 22)
echo "   loss 10%: $line"
[ "$(field errors, <<<"$line")" = 0 ] || fail "writes failed on a lossy link"
[ "$(marked 2)" = 0 ] || fail "node 2 was marked out of sync on a lossy link"
pass "on a link that loses 10% of its segments the writes go on (the longest wait $(longest <<<"$line") ms) and node 2 stays in sync"
for way in down up; do
  faults pass
  back=$(insync 2)
  faults hold "$way"
  line=$(write 1 --seconds 6 --size 4096 --depth 4 --random --offset-mib 72 --span-mib 8 --seed 23)
  [ "$way" = down ] && what="node 2's answers held, node 1's frames passing" || what="node 1's frames held, node 2's answers passing"
  echo "   $what: $line"
  [ "$(field errors, <<<"$line")" = 0 ] || fail "writes failed with the link one-way ($way held)"
  [ "$(marked 2)" -ge 1 ] || fail "node 2 was not marked out of sync with the link one-way ($way held)"
  faults pass
  deadline=$((SECONDS + 30))
  until [ "$(insync 2)" -gt "$back" ]; do
    [ $SECONDS -lt $deadline ] || fail "node 2 was not resynced within 30 s of the link passing again"
    sleep 0.2
  done
  copied=$(plain 1 | grep "replica back in sync.*replica=2 " | tail -n 1 | sed -n 's/.*copied_bytes=\([0-9]*\).*/\1/p')
  [ -n "$copied" ] && [ "$copied" -le $((8 << 20)) ] || fail "the resync after a one-way link copied $copied bytes"
  mapfile -t s < <(sums)
  [ "${s[0]}" = "${s[1]}" ] && [ "${s[0]}" = "${s[2]}" ] || fail "the images differ after a one-way link ($way held)"
  pass "one-way ($way held): writes went on after $(longest <<<"$line") ms at most, node 2 was marked out of sync, and resynced with $copied bytes once the link passed; the images are equal"
done

echo "-- 2. kill -9 of a replica in the middle of writes"
write 1 --seconds 6 --size 4096 --depth 8 --random --offset-mib 80 --span-mib 16 --seed 2 >"$work/during.txt" &
writer=$!
sleep 2
kill -9 "${pid[3]}"; wait "${pid[3]}" 2>/dev/null || true; unset 'pid[3]'
echo "   node 3 killed (kill -9) 2 s into 6 s of 4 KiB random writes over 16 MiB"
wait "$writer" || fail "the writer failed"
line=$(cat "$work/during.txt"); echo "   $line"
[ "$(field errors, <<<"$line")" = 0 ] || fail "writes failed while a replica was lost"
pause=$(sed -n 's/.*longest \([0-9]*\) ms.*/\1/p' <<<"$line")
pass "writes went on without node 3; the longest wait for one write was $pause ms"
[ "$(marked 3)" -ge 1 ] || fail "node 3 was not marked out of sync"
s3=$(cd "$work" && sha256sum node3.img | awk '{print $1}')
[ "$s3" != "$(cd "$work" && sha256sum node1.img | awk '{print $1}')" ] || fail "node 3 did not miss anything?"
before=$(grep -c "replica back in sync" "$work/node1.log" || true)
start 3
wait_log 1 "replica back in sync" 60 $((before + 1))
insync=$(grep "replica back in sync" "$work/node1.log" | tail -n 1 | sed 's/\x1b\[[0-9;]*m//g')
copied=$(sed -n 's/.*copied_bytes=\([0-9]*\).*/\1/p' <<<"$insync")
took=$(sed -n 's/.*seconds="\?\([0-9.]*\).*/\1/p' <<<"$insync")
rate=$(sed -n 's/.*mb_per_s="\?\([0-9]*\).*/\1/p' <<<"$insync")
echo "   node 3 resynced: ${copied} bytes copied ($((copied / 1048576)) MiB of a 128 MiB volume; the writes covered 16 MiB) in ${took} s, ${rate} MB/s (resync_mbps 200)"
[ -n "$copied" ] && [ "$copied" -gt 0 ] && [ "$copied" -le $((16 << 20)) ] || fail "the resync copied $copied bytes, not only the changed part"
mapfile -t s < <(sums)
[ "${s[0]}" = "${s[1]}" ] && [ "${s[0]}" = "${s[2]}" ] || fail "the images differ after the resync"
pass "node 3 got only what it missed and the three images are equal again"

echo "-- 2b. kill -9 of the primary"
# The writer's session dies with the primary: its own ending is not the test.
write 1 --seconds 2 --size 4096 --depth 8 --random --offset-mib 96 --span-mib 8 --seed 5 >/dev/null 2>&1 &
writer=$!
sleep 1
kill -9 "${pid[1]}"; wait "${pid[1]}" 2>/dev/null || true; unset 'pid[1]'
wait "$writer" 2>/dev/null || true
echo "   node 1 killed (kill -9) 1 s into 4 KiB random writes over 8 MiB"
# A write that reached node 2 only, as one in flight at the kill may have.
printf 'written on node 2 alone' | dd of="$work/node2.img" bs=1 seek=$((100 << 20)) conv=notrunc status=none
echo "   23 bytes written into node 2's image at 100 MiB behind its back (an in-flight write that reached it alone)"
before=$(grep -c "replica back in sync" "$work/node1.log" || true)
start 1
grep -q "did not stop cleanly" "$work/node1.log" || fail "the restarted primary trusted its replicas"
wait_log 1 "replica back in sync" 60 $((before + 2))
grep "replica back in sync" "$work/node1.log" | tail -n 2 | sed 's/\x1b\[[0-9;]*m//g' |
  sed -n 's/.*replica=\([0-9]*\).*copied_bytes=\([0-9]*\).*matched_bytes=\([0-9]*\).*seconds="\?\([0-9.]*\).*/   node \1 resynced in full by checksums: \2 bytes sent, \3 bytes found equal, in \4 s/p'
sent2=$(grep "replica back in sync" "$work/node1.log" | tail -n 2 | sed 's/\x1b\[[0-9;]*m//g' | grep "replica=2" | sed -n 's/.*copied_bytes=\([0-9]*\).*/\1/p')
[ "${sent2:-0}" -ge 65536 ] || fail "the region that differs on node 2 was not sent"
mapfile -t s < <(sums)
[ "${s[0]}" = "${s[1]}" ] && [ "${s[0]}" = "${s[2]}" ] || fail "the images differ after the primary's restart"
pass "a primary killed with writes in flight resyncs both replicas in full at its restart, sending only what differs, and the images are equal"

echo "-- 3. the primary lost with a write in flight that reached node 3 alone; node 2 takes over"
echo "   $(pr 1 register abc1)"
echo "   $(pr 1 reserve abc1 1)"
echo "   node 1: $(pr 1 read-reservation)"
kill -USR1 "${pid[proxy]}"
# The first 64 KiB write reaches node 3 and waits for node 2, which never gets it.
write 1 --mib 1 --size 65536 --depth 1 --offset-mib 110 --seed 11 >/dev/null 2>&1 &
writer=$!
sleep 1
kill -9 "${pid[1]}" "${pid[proxy]}"; wait "${pid[1]}" "${pid[proxy]}" 2>/dev/null || true; unset 'pid[1]' 'pid[proxy]'
wait "$writer" 2>/dev/null || true
region() { dd if="$work/node$1.img" bs=64K skip=$((110 * 16)) count=1 status=none | sha256sum | cut -c1-16; }
echo "   node 1 killed (kill -9) with a 64 KiB write at 110 MiB on node 3 (region $(region 3)…) and held on its way to node 2 (region $(region 2)…)"
[ "$(region 2)" != "$(region 3)" ] || fail "the write in flight did not reach node 3 alone"
config 2 2 2 >"$work/node2.toml"; config 3 2 2 >"$work/node3.toml"
# The replica first, then the new primary (as the README says to).
applied=$(grep -c "new placement applied" "$work/node3.log" || true)
kill -HUP "${pid[3]}"
wait_log 3 "new placement applied" 20 $((applied + 1))
kill -HUP "${pid[2]}"
wait_log 2 "replica reconciled after promotion" 20 1
line=$(grep "reconciling a replica after promotion" "$work/node2.log" | tail -n 1 | sed 's/\x1b\[[0-9;]*m//g')
echo "   node 2, promoted at epoch 2: its activity log $(sed -n 's/.*ours=\([0-9]*\).*/\1/p' <<<"$line") regions, node 3's $(sed -n 's/.*theirs=\([0-9]*\).*/\1/p' <<<"$line") regions"
line=$(grep "replica reconciled after promotion" "$work/node2.log" | tail -n 1 | sed 's/\x1b\[[0-9;]*m//g')
copied=$(sed -n 's/.*copied_bytes=\([0-9]*\).*/\1/p' <<<"$line")
took=$(sed -n 's/.*seconds="\?\([0-9.]*\).*/\1/p' <<<"$line")
echo "   node 3 reconciled: $copied bytes copied from node 2 in $took s (the volume is 128 MiB)"
[ -n "$copied" ] && [ "$copied" -ge 65536 ] && [ "$copied" -le $((1 << 20)) ] || fail "the reconciliation copied $copied bytes"
mapfile -t s < <(sums)
[ "${s[1]}" = "${s[2]}" ] || fail "node 3 differs from the new primary after the reconciliation"
pass "the write in flight that reached node 3 alone is undone there by the activity logs: nodes 2 and 3 are equal"
line=$(pr 2 read-reservation); echo "   node 2: $line"
grep -q "reservation key 0xabc1, type 1" <<<"$line" || fail "the reservation did not follow the volume"
pass "READ RESERVATION through the new primary shows the reservation made through the old one"
via2="127.0.2.1:$repl_port"
config 1 1 1 >"$work/node1.toml"
start 1
echo "   node 1 restarted with its epoch 1 configuration"
mapfile -t before < <(sums)
line=$(write 1 --mib 1 --size 4096 --depth 4 --seed 9)
echo "   node 1: $line"
[ "$(field done, <<<"$line")" = 0 ] || fail "the old primary got a write accepted"
mapfile -t after < <(sums)
[ "${before[1]}" = "${after[1]}" ] && [ "${before[2]}" = "${after[2]}" ] || fail "a replica took a write of the old primary"
pass "the old primary got no write accepted and the replicas' images did not change"

echo "-- 4. the new primary"
line=$(write 2 --mib 8 --size 65536 --depth 8 --seed 4)
echo "   node 2: $line"
[ "$(field errors, <<<"$line")" = 0 ] || fail "writes through the new primary failed"
mapfile -t s < <(sums)
[ "${s[1]}" = "${s[2]}" ] || fail "node 3 differs from the new primary"
pass "writes through node 2 are on node 3"
url="iscsi://127.0.2.1:$iscsi_port/$(iqn 2)/0"
# The reservation of step 3 is still held; the suite makes its own.
echo "   $(pr 2 clear abc2)"
passed=0 failed=0
for family in CompareAndWrite PrinReadKeys PrinServiceactionRange PrinReportCapabilities \
    ProutRegister ProutReserve ProutClear ProutPreempt; do
  result=$(timeout 300 "$scorer" "$url" --tests "ALL.$family" | tail -n 1)
  echo "   $family: ${result#conformance: }"
  read -r p f < <(sed -n 's/.*: \([0-9]*\) passed, [0-9]* skipped, \([0-9]*\) failed.*/\1 \2/p' <<<"$result")
  passed=$((passed + ${p:-0})) failed=$((failed + ${f:-1}))
done
[ "$passed" -gt 0 ] && [ "$failed" = 0 ] || fail "persistent reservations or COMPARE AND WRITE failed on a replicated volume"
pass "persistent-reservation and COMPARE AND WRITE families against a replicated volume: $passed passed, 0 failed"
echo "replication: all checks passed"
