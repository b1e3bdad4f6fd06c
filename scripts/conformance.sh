#!/usr/bin/env bash
# Runs libiscsi's conformance suite (through ../shared/tools/iscsi-conformance,
# the project's scorer) against `portico engine` serving a thin file-backed
# 1 GiB LUN from /dev/shm, and a read-only LUN for the ReadOnly family.
# Fails if any test of a family we claim fails.
#
# usage: scripts/conformance.sh PORTICO_BINARY
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
portico=${1:?usage: conformance.sh PORTICO_BINARY}
scorer="${PORTICO_SHARED_DIR:-$here/../shared}/tools/iscsi-conformance"
[ -x "$scorer" ] || { echo "conformance: scorer not found at $scorer (set PORTICO_SHARED_DIR)" >&2; exit 1; }

# Families that must not fail (issue 3). ReadOnly is checked on its own LUN.
families="Inquiry Mandatory ModeSense6 Prefetch10 Prefetch16 Read6 Read10 Read12 Read16
ReadCapacity10 ReadCapacity16 ReportSupportedOpcodes StartStopUnit TestUnitReady
Verify10 Verify12 Verify16 Write10 Write12 Write16 WriteVerify10 WriteVerify12 WriteVerify16
iSCSIcmdsn iSCSIdatasn iSCSIResiduals iSCSITMF"

work=$(mktemp -d /dev/shm/portico-conformance.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cat > "$work/engine.toml" <<TOML
[[volume]]
name = "conf"
backend = "file"
path = "$work/conf.img"
size = "1GiB"
block_size = 512

[[volume]]
name = "conf-ro"
backend = "file"
path = "$work/conf-ro.img"
size = "64MiB"
block_size = 512
read_only = true

[[target]]
iqn = "iqn.2026-11.local.portico:conformance"
portals = ["127.0.0.1:$port"]
tpg = 1
luns = { 0 = "conf" }

[[target]]
iqn = "iqn.2026-11.local.portico:conformance-ro"
portals = ["127.0.0.1:$port"]
tpg = 2
luns = { 0 = "conf-ro" }
TOML

"$portico" engine --config "$work/engine.toml" >"$work/engine.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/engine.log"; echo "conformance: engine exited" >&2; exit 1; }
  sleep 0.1
done

status=0
"$scorer" "iscsi://127.0.0.1:$port/iqn.2026-11.local.portico:conformance/0" --json "$work/all.json" | tail -n 40
"$scorer" "iscsi://127.0.0.1:$port/iqn.2026-11.local.portico:conformance-ro/0" --tests 'SCSI.ReadOnly.*' --json "$work/ro.json" | tail -n 5

python3 - "$work/all.json" "$work/ro.json" $families <<'PY' || status=1
import json, sys
all_tests = json.load(open(sys.argv[1]))["tests"]
ro = json.load(open(sys.argv[2]))
claimed = set(sys.argv[3:])
bad = [t for t, r in all_tests.items() if t.split(".")[0] in claimed and r == "failed"]
missing = [f for f in claimed if not any(t.split(".")[0] == f for t in all_tests)]
ro_ok = ro["counts"]["failed"] == 0 and ro["counts"]["passed"] > 0
for t in sorted(bad):
    print("claimed family failed:", t)
for f in sorted(missing):
    print("claimed family never ran:", f)
if not ro_ok:
    print("ReadOnly did not pass against the read-only LUN:", ro["counts"])
sys.exit(1 if bad or missing or not ro_ok else 0)
PY
if [ $status -eq 0 ]; then echo "conformance check: every claimed family passed"; else echo "conformance check: FAILED" >&2; fi
exit $status
