#!/usr/bin/env bash
# Sets everything up (first time only) and runs a Portico node with embedded
# SQLite: dashboard on http://127.0.0.1:8080, data in ./portico-data.
# Extra arguments go to `portico serve` (see `portico serve --help`).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
"$here/scripts/setup.sh"
. "$here/scripts/env.sh"
cargo leptos build --release
export LEPTOS_SITE_ROOT="${LEPTOS_SITE_ROOT:-$here/target/site}"
exec "$CARGO_TARGET_DIR/release/portico" serve "$@"
