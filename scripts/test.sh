#!/usr/bin/env bash
# Sets everything up (first time only) and runs every test Portico has:
# unit, property and integration tests of all crates, libiscsi's conformance
# suite against `portico engine` (a replicated volume included), replication
# between three `portico engine` processes with a replica killed and a
# primary replaced, a cluster of three `portico serve` nodes (join, a
# leader killed), failover across them under a multipath test initiator,
# link faults, the seed's sample setup (four endpoints on two switches), the nemesis (random faults on every link), the Debian package, and the browser tests (Playwright +
# Chromium) on the release build.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
"$here/scripts/setup.sh"
. "$here/scripts/env.sh"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "cargo test (all crates)"
cargo test --workspace --all-targets

step "build the node (server + dashboard), the release build users run"
cargo leptos build --release
portico="$CARGO_TARGET_DIR/release/portico"

step "iSCSI conformance (libiscsi iscsi-test-cu)"
"$here/scripts/conformance.sh" "$portico"

step "replication between three nodes (kill -9, a new primary beside the old)"
"$here/scripts/replication-test.sh" "$portico"

step "a cluster of three nodes (join, forwarded changes, kill -9 of the leader)"
"$here/scripts/cluster-test.sh" "$portico"

step "failover across three nodes (kill -9, SIGSTOP, a planned switchover, the leader killed), at most 10 minutes"
timeout 600 "$here/scripts/failover-test.sh" "$portico"

step "link faults: a node's replication link, then its iSCSI link pulled, its iSCSI link flapping (network namespaces), at most 7 minutes"
timeout 420 "$here/scripts/link-fault-test.sh" "$portico"

step "the sample setup: two targets with two portals each on two switches (bridges in network namespaces), a switch lost, a node lost, and back, at most 6 minutes"
timeout 360 "$here/scripts/sample-setup-test.sh" "$portico"

step "the nemesis: a partial partition, a crash during a promotion, a CLEAR across a failover, then ${NEMESIS_MINUTES:-3} minutes of random faults (NEMESIS_MINUTES, NEMESIS_SEED)"
timeout $((600 + ${NEMESIS_MINUTES:-3} * 120)) "$here/scripts/nemesis-test.sh" "$portico"

step "the Debian package (cargo-deb; unpacked and checked)"
"$here/scripts/deb-test.sh"

step "browser tests (Playwright, on the release build)"
PORTICO_BIN="$portico" "$here/scripts/test-e2e.sh"
