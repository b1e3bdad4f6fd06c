#!/usr/bin/env bash
# Installs everything Portico needs to build, run and test on a fresh Debian 12
# machine that has only rustup and cargo. Safe to run again: each step checks
# first and does nothing when its tool is already there at the pinned version.
set -euo pipefail

CARGO_LEPTOS_VERSION=0.3.10
# Must equal the wasm-bindgen version pinned in Cargo.toml / Cargo.lock.
WASM_BINDGEN_VERSION=0.2.130
BINARYEN_NPM_VERSION=132.0.0
CARGO_DEB_VERSION=3.6.2

here=$(cd "$(dirname "$0")/.." && pwd)
tools="${PORTICO_TOOLS_DIR:-$HOME/.cache/portico/tools}"
mkdir -p "$tools"

log() { printf '\033[1msetup:\033[0m %s\n' "$*"; }

need_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_packages=(libiscsi-bin tgt chromium python3 pkg-config libssl-dev)
missing=()
for p in "${apt_packages[@]}"; do
  grep -q "install ok installed" <<<"$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  need_root apt-get update -qq
  need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! grep -qx wasm32-unknown-unknown <<<"$(rustup target list --installed)"; then
  log "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

cargo_tool_version() { "$1" --version 2>/dev/null | awk '{print $2}'; }

if [ "$(cargo_tool_version cargo-leptos)" != "$CARGO_LEPTOS_VERSION" ]; then
  log "installing cargo-leptos $CARGO_LEPTOS_VERSION (first time only, about 25 minutes)"
  cargo install cargo-leptos --locked --version "$CARGO_LEPTOS_VERSION"
fi

if [ "$(cargo_tool_version wasm-bindgen)" != "$WASM_BINDGEN_VERSION" ]; then
  log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION"
  # Not --locked: its own lock file names a crate version the registry lacks.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

if [ "$(cargo_tool_version cargo-deb)" != "$CARGO_DEB_VERSION" ]; then
  log "installing cargo-deb $CARGO_DEB_VERSION (builds the .deb)"
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi

if [ ! -x "$tools/node_modules/.bin/wasm-opt" ] || \
   [ "$(node -p "require('$tools/node_modules/binaryen/package.json').version" 2>/dev/null)" != "$BINARYEN_NPM_VERSION" ]; then
  log "installing wasm-opt (npm binaryen $BINARYEN_NPM_VERSION)"
  npm install --silent --prefix "$tools" "binaryen@$BINARYEN_NPM_VERSION" >/dev/null
fi

if [ ! -d "$here/end2end/node_modules/@playwright/test" ]; then
  log "installing the Playwright test runner (no browser download: Debian's chromium is used)"
  (cd "$here/end2end" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --silent --no-audit --no-fund)
fi

log "ready"
