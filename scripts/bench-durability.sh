#!/usr/bin/env bash
# What write-through costs: the same writes against a write-back and a
# write-through volume, both file-backed on this machine's disk (not tmpfs,
# where a flush costs nothing), served by a release `portico engine`.
# Prints, per policy: 128 KiB writes with 32 in flight and 4 KiB random
# writes with 1 in flight; then 4 KiB random writes with 32 in flight,
# alternating between the policies three times, and write-through's share of
# write-back's median IOPS (the goal is at least 50%).
#
# usage: scripts/bench-durability.sh [SECONDS_PER_RUN]   (default 10)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/env.sh"
seconds=${1:-10}

cargo build --release -q -p portico-server
cargo build --release -q -p target-engine --features test-util --example writebench
portico="$CARGO_TARGET_DIR/release/portico"
bench="$CARGO_TARGET_DIR/release/examples/writebench"

# On the disk that holds the build cache, never in /dev/shm.
work=$(mktemp -d "${PORTICO_BENCH_DIR:-$HOME/.cache/portico}/bench-durability.XXXXXX")
df -h "$work" | tail -n 1 | awk '{print "disk: " $1 " (" $2 ", mounted on " $6 ")"}'
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cat > "$work/engine.toml" <<TOML
[[volume]]
name = "wb"
path = "$work/wb.img"
size = "2GiB"
write_cache = "write-back"

[[volume]]
name = "wt"
path = "$work/wt.img"
size = "2GiB"
write_cache = "write-through"

[[target]]
iqn = "iqn.2026-11.local.portico:bench"
portals = ["127.0.0.1:$port"]
luns = { 0 = "wb", 1 = "wt" }
TOML
"$portico" engine --config "$work/engine.toml" >"$work/engine.log" 2>&1 &
pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

run() { # LUN ARGS...
  local lun=$1; shift
  "$bench" --portal "127.0.0.1:$port" --target iqn.2026-11.local.portico:bench --lun "$lun" \
    --seconds "$seconds" --span-mib 1024 "$@"
}
for policy in write-back:0 write-through:1; do
  name=${policy%%:*} lun=${policy##*:}
  echo "-- $name"
  run "$lun" --size 131072 --depth 32 | sed 's/^/   /'
  run "$lun" --size 4096 --depth 1 --random | sed 's/^/   /'
done
# The figure the goal is about, alternated three times (these machines are
# shared and noisy): 4 KiB random writes, 32 in flight.
echo "-- 4 KiB random writes, 32 in flight, alternating"
wb=() wt=()
iops() { awk '{for (i = 1; i < NF; i++) if ($(i + 1) == "IOPS,") print $i}'; }
for round in 1 2 3; do
  line=$(run 0 --size 4096 --depth 32 --random); echo "   write-back:    $line"; wb+=("$(iops <<<"$line")")
  line=$(run 1 --size 4096 --depth 32 --random); echo "   write-through: $line"; wt+=("$(iops <<<"$line")")
done
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
awk -v wt="$(median "${wt[@]}")" -v wb="$(median "${wb[@]}")" \
  'BEGIN { printf "medians: write-back %d IOPS, write-through %d IOPS: write-through keeps %.0f%% (goal: at least 50%%)\n", wb, wt, 100 * wt / wb }'
