#!/usr/bin/env bash
# What synchronous replication costs: the same writes against a volume kept
# on one node, on two and on three, served by release `portico engine`
# processes on 127.0.1.1, 127.0.2.1 and 127.0.3.1 (images in /dev/shm, so
# that the figures show replication's own cost, not a disk's). Prints, for
# each: 128 KiB sequential writes with 32 in flight (MB/s), 4 KiB random
# writes with 32 in flight (IOPS), and 4 KiB random writes with 1 in flight
# (median and 99th-percentile latency); then the ratios the goals are about:
# two copies keep at least 60% of one copy's throughput, and their QD1
# latency is at most 1.5x one copy's plus one loopback round trip.
#
# All of it twice: streams over TLS keyed by the replication key (the
# default) and over plain TCP (`transport = "plain"`), and then what the
# protection costs: TLS keeps at least 85% of plain's 128 KiB throughput.
#
# usage: scripts/bench-replication.sh [SECONDS_PER_RUN]   (default 5)
#        BENCH_TRANSPORTS="tls" scripts/bench-replication.sh   (one transport only)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/env.sh"
seconds=${1:-5}

cargo build --release -q -p portico-server
cargo build --release -q -p target-engine --features test-util --example writebench
portico="$CARGO_TARGET_DIR/release/portico"
bench="$CARGO_TARGET_DIR/release/examples/writebench"

work=$(mktemp -d /dev/shm/portico-bench-replication.XXXXXX)
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/replication.key"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
iscsi=$(free_port)
repl=$(free_port)
iqn=iqn.2026-11.local.portico:bench-replication

# Node 1 holds the three volumes and is their primary: "one" alone, "two"
# with a replica on node 2, "three" with replicas on nodes 2 and 3.
volume() { # NODE NAME REPLICA_NODES...
  local node=$1 name=$2; shift 2
  local copies=() n
  for n in "$@"; do copies+=("{ node = $n, address = \"127.0.$n.1:$repl\" }"); done
  local IFS=,
  echo "[[volume]]"
  echo "name = \"$name\""
  echo "path = \"$work/node$node-$name.img\""
  echo "size = \"2GiB\""
  [ $# -gt 0 ] && echo "replication = { epoch = 1, primary = 1, min_in_sync = $(($# + 1)), replicas = [ ${copies[*]} ] }"
  echo
}
configure() { # TRANSPORT
for node in 1 2 3; do
  {
    printf '[replication]\nnode = %s\nlisten = "127.0.%s.1:%s"\nkey_file = "%s"\ntransport = "%s"\n\n' \
      "$node" "$node" "$repl" "$work/replication.key" "$1"
    [ "$node" = 1 ] && volume 1 one
    [ "$node" != 3 ] && volume "$node" two 2
    volume "$node" three 2 3
    if [ "$node" = 1 ]; then
      printf '[[target]]\niqn = "%s"\nportals = ["127.0.1.1:%s"]\nluns = { 0 = "one", 1 = "two", 2 = "three" }\n' "$iqn" "$iscsi"
    else
      printf '[[target]]\niqn = "%s-%s"\nportals = ["127.0.%s.1:%s"]\nluns = { %s }\n' "$iqn" "$node" "$node" "$iscsi" \
        "$([ "$node" = 2 ] && echo '0 = "two", 1 = "three"' || echo '0 = "three"')"
    fi
  } >"$work/node$node.toml"
done
}
start() {
  pids=()
  for node in 3 2 1; do
    "$portico" engine --config "$work/node$node.toml" >"$work/node$node.log" 2>&1 &
    pids+=($!)
  done
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.1.1/$iscsi") 2>/dev/null && break; sleep 0.1; done
  for _ in $(seq 100); do [ "$(grep -c 'replication stream open' "$work/node1.log" || true)" -ge 3 ] && break; sleep 0.1; done
}
stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
  rm -f "$work"/*.img "$work"/*.img.*
}

# Where the time goes: CPU ticks (1/100 s) of each engine and of the whole
# machine (all cores, busy and idle) from /proc.
ticks() { # PID...: each process's user+system ticks, then the machine's busy and total
  for p in "$@"; do awk '{print $14 + $15}' "/proc/$p/stat"; done
  awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6; print t}' /proc/stat
}
run() { # LUN ARGS...: the writebench line, then where the CPU went during it
  local lun=$1; shift
  local before after line
  before=($(ticks "${pids[2]}" "${pids[1]}" "${pids[0]}"))
  line=$("$bench" --portal "127.0.1.1:$iscsi" --target "$iqn" --lun "$lun" --seconds "$seconds" --span-mib 1024 "$@")
  after=($(ticks "${pids[2]}" "${pids[1]}" "${pids[0]}"))
  echo "$line"
  awk -v n1=$((after[0] - before[0])) -v n2=$((after[1] - before[1])) -v n3=$((after[2] - before[2])) \
    -v busy=$((after[3] - before[3])) -v total=$((after[4] - before[4])) -v cores="$(nproc)" 'BEGIN {
      printf "     CPU: node1 %.0f%%, node2 %.0f%%, node3 %.0f%% of one core; the machine %.0f%% busy (%d cores)\n",
        100 * n1 / (total / cores), 100 * n2 / (total / cores), 100 * n3 / (total / cores), 100 * busy / total, cores }'
}
pick() { # KEY: the number before KEY in a writebench line
  awk -v k="$1" '{for (i = 2; i <= NF; i++) if ($i == k) print $(i - 1)}'
}
rtt_us=$(python3 - <<'PY'
import socket, statistics, threading, time
srv = socket.socket(); srv.bind(("127.0.2.1", 0)); srv.listen(1)
def echo():
    c, _ = srv.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while (b := c.recv(64)):
        c.sendall(b)
threading.Thread(target=echo, daemon=True).start()
s = socket.create_connection(srv.getsockname()); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
times = []
for _ in range(2000):
    t = time.perf_counter(); s.sendall(b"x" * 48); s.recv(64); times.append(time.perf_counter() - t)
print(round(statistics.median(times) * 1e6))
PY
)
echo "loopback round trip (median of 2000): $rtt_us us"

declare -A mbps iops p50 p99 plain_mbps
transports=${BENCH_TRANSPORTS:-plain tls}
for transport in $transports; do
configure "$transport"
start
echo "== replication streams over $transport"
for copies in 1 2 3; do
  lun=$((copies - 1))
  echo "-- $copies cop$([ $copies = 1 ] && echo y || echo ies)"
  line=$(run "$lun" --size 131072 --depth 32); echo "   $line"; line=${line%%$'\n'*}; mbps[$copies]=$(pick MB/s, <<<"$line")
  line=$(run "$lun" --size 4096 --depth 32 --random); echo "   $line"; line=${line%%$'\n'*}; iops[$copies]=$(pick IOPS, <<<"$line")
  line=$(run "$lun" --size 4096 --depth 1 --random); echo "   $line"; line=${line%%$'\n'*}
  p50[$copies]=$(pick "ms," <<<"$line" | sed -n 1p); p99[$copies]=$(pick "ms," <<<"$line" | sed -n 2p)
done
stop
[ "$transport" = plain ] && for c in 2 3; do plain_mbps[$c]=${mbps[$c]}; done
for copies in 2 3; do
  awk -v c="$copies" -v m="${mbps[$copies]}" -v m1="${mbps[1]}" -v i="${iops[$copies]}" -v i1="${iops[1]}" \
    -v l="${p50[$copies]}" -v l1="${p50[1]}" -v q="${p99[$copies]}" -v q1="${p99[1]}" -v rtt="$rtt_us" 'BEGIN {
      printf "%d copies: 128 KiB QD32 %.0f%% of one copy, 4 KiB QD32 %.0f%%, QD1 median %.3f ms (%.2fx one copy; bound %.3f ms), p99 %.3f ms (%.2fx)\n",
        c, 100 * m / m1, 100 * i / i1, l, l / l1, 1.5 * l1 + rtt / 1000, q, q / q1 }'
done
awk -v m="${mbps[2]}" -v m1="${mbps[1]}" -v l="${p50[2]}" -v l1="${p50[1]}" -v rtt="$rtt_us" 'BEGIN {
  t = 100 * m / m1; b = 1.5 * l1 + rtt / 1000
  printf "goals (two copies): throughput %.0f%% (at least 60%%): %s; QD1 median %.3f ms against %.3f ms: %s\n",
    t, (t >= 60 ? "met" : "missed"), l, b, (l <= b ? "met" : "missed") }'
done
if [ -n "${plain_mbps[2]:-}" ] && [ "$transport" = tls ]; then
  for copies in 2 3; do
    awk -v c="$copies" -v t="${mbps[$copies]}" -v p="${plain_mbps[$copies]}" 'BEGIN {
      r = 100 * t / p
      printf "protection (%d copies): 128 KiB QD32 over TLS %.0f MB/s, plain %.0f MB/s: %.0f%% of plain (at least 85%%): %s\n",
        c, t, p, r, (r >= 85 ? "met" : "missed") }'
  done
fi
