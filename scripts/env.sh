# Sourced by the project scripts: where builds and tools live.
# A persistent target directory outside the clone keeps rebuilds fast.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/portico/target}"
export PORTICO_TOOLS_DIR="${PORTICO_TOOLS_DIR:-$HOME/.cache/portico/tools}"
export PATH="$HOME/.cargo/bin:$PORTICO_TOOLS_DIR/node_modules/.bin:$PATH"
