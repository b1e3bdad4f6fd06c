#!/usr/bin/env bash
# Runs libiscsi's conformance suite (through ../shared/tools/iscsi-conformance,
# the project's scorer) twice, and fails if any test of a family we claim fails:
#
#  1. against `portico engine` serving a thin file-backed 1 GiB LUN from
#     /dev/shm (plus a read-only LUN for the ReadOnly family);
#  2. against `portico serve`, with the volume and target group built only
#     through the REST API.
#
# usage: scripts/conformance.sh PORTICO_BINARY
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
portico=${1:?usage: conformance.sh PORTICO_BINARY}
shared="${PORTICO_SHARED_DIR:-$here/../shared}"
[ -d "$shared/tools" ] || shared=/work/shared
scorer="$shared/tools/iscsi-conformance"
[ -x "$scorer" ] || { echo "conformance: scorer not found at $scorer (set PORTICO_SHARED_DIR)" >&2; exit 1; }

# Families that must not fail (issue 3). ReadOnly is checked on its own LUN.
families="Inquiry Mandatory ModeSense6 Prefetch10 Prefetch16 Read6 Read10 Read12 Read16
ReadCapacity10 ReadCapacity16 ReportSupportedOpcodes StartStopUnit TestUnitReady
Verify10 Verify12 Verify16 Write10 Write12 Write16 WriteVerify10 WriteVerify12 WriteVerify16
iSCSIcmdsn iSCSIdatasn iSCSIResiduals iSCSITMF"

work=$(mktemp -d /dev/shm/portico-conformance.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

wait_port() { # port pid log
  for _ in $(seq 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { cat "$3"; echo "conformance: the process exited" >&2; exit 1; }
    sleep 0.1
  done
  echo "conformance: nothing listens on $1" >&2; exit 1
}

# check URL JSON_ALL [JSON_READONLY]: every claimed family ran and none failed.
#
# The scorer counts a test as failed when any "[FAILED]" text appears in its
# output. Some libiscsi tests print such lines for failures they provoke on
# purpose (iSCSIDataSnInvalid logs "[FAILED] WRITE10 command failed" for each
# write it corrupts and expects to fail). For a claimed test the scorer
# flagged, iscsi-test-cu is run again on that test alone and its own CUnit
# verdict decides: it must have run, passed, and failed no assertion.
check() {
  local url=$1; shift
  local flagged
  flagged=$(python3 - "$@" $families <<'PY'
import json, sys
all_tests = json.load(open(sys.argv[1]))["tests"]
ro_file = sys.argv[2] if sys.argv[2].endswith(".json") else None
claimed = set(sys.argv[3:] if ro_file else sys.argv[2:])
missing = [f for f in claimed if not any(t.split(".")[0] == f for t in all_tests)]
for f in sorted(missing):
    print("claimed family never ran:", f, file=sys.stderr)
ok = not missing
if ro_file:
    ro = json.load(open(ro_file))
    if not (ro["counts"]["failed"] == 0 and ro["counts"]["passed"] > 0):
        print("ReadOnly did not pass against the read-only LUN:", ro["counts"], file=sys.stderr)
        ok = False
for t, r in sorted(all_tests.items()):
    if t.split(".")[0] in claimed and r == "failed":
        print(t)
sys.exit(0 if ok else 1)
PY
) || return 1
  local bad=0 t summary
  for t in $flagged; do
    summary=$(iscsi-test-cu -d -t "ALL.$t" "$url" 2>&1 | awk '$1 == "tests" {print $2, $3, $4, $5}')
    if [ "$summary" = "1 1 1 0" ]; then
      echo "scorer flagged $t; iscsi-test-cu alone: ran 1, passed 1, failed 0 (its [FAILED] lines are failures the test provokes)"
    else
      echo "claimed family failed: $t (iscsi-test-cu alone: total/ran/passed/failed = ${summary:-no summary})"
      bad=1
    fi
  done
  return $bad
}

status=0

echo "-- 1. portico engine --config (file-backed 1 GiB LUN in /dev/shm)"
port=$(free_port)
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
# A read-only LUN serves an existing image.
truncate -s 64M "$work/conf-ro.img"
"$portico" engine --config "$work/engine.toml" >"$work/engine.log" 2>&1 &
pids+=($!)
wait_port "$port" "${pids[-1]}" "$work/engine.log"
"$scorer" "iscsi://127.0.0.1:$port/iqn.2026-11.local.portico:conformance/0" --json "$work/all.json" | tail -n 1
"$scorer" "iscsi://127.0.0.1:$port/iqn.2026-11.local.portico:conformance-ro/0" --tests 'SCSI.ReadOnly.*' --json "$work/ro.json" | tail -n 1
check "iscsi://127.0.0.1:$port/iqn.2026-11.local.portico:conformance/0" "$work/all.json" "$work/ro.json" || status=1

echo "-- 2. portico serve, group built through the REST API"
http=$(free_port)
iscsi=$(free_port)
PORTICO_ADMIN_PASSWORD=conformance-admin "$portico" serve --http "127.0.0.1:$http" --data-dir "$work/node" \
  --node-name conf-node >"$work/node.log" 2>&1 &
pids+=($!)
wait_port "$http" "${pids[-1]}" "$work/node.log"
api() { # METHOD PATH [JSON]
  curl -fsS -b "$work/jar" -c "$work/jar" -X "$1" -H 'content-type: application/json' ${3:+-d "$3"} \
    "http://127.0.0.1:$http/api/v1$2" >/dev/null
}
api POST /login '{"username":"admin","password":"conformance-admin"}'
api POST /volumes '{"name":"conf","size":"1GiB"}'
api POST /target-groups "{\"name\":\"conf\",\"targets\":[{\"node\":\"conf-node\",\"portals\":[\"127.0.0.1:$iscsi\"]}]}"
api POST /target-groups/conf/luns '{"volume":"conf","lun":0}'
"$scorer" "iscsi://127.0.0.1:$iscsi/iqn.2026-11.local.portico:conf.conf-node/0" --json "$work/api.json" | tail -n 1
check "iscsi://127.0.0.1:$iscsi/iqn.2026-11.local.portico:conf.conf-node/0" "$work/api.json" || status=1

if [ $status -eq 0 ]; then echo "conformance check: every claimed family passed"; else echo "conformance check: FAILED" >&2; fi
exit $status
