#!/usr/bin/env bash
# Builds the Debian package of a node: the release binary, the built
# dashboard, the systemd unit and /etc/default/portico. Prints the path of
# the .deb. Install it with `apt install ./portico_*.deb`.
#
# usage: scripts/package-deb.sh [--no-build]   (--no-build: the release build is done)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
"$here/scripts/setup.sh" >&2
. "$here/scripts/env.sh"
if [ "${1:-}" != "--no-build" ]; then
  cargo leptos build --release >&2
fi
out="$CARGO_TARGET_DIR/debian"
mkdir -p "$out"
cargo deb -p portico-server --no-build --no-strip --output "$out" >&2
ls -t "$out"/portico_*.deb | head -n 1
