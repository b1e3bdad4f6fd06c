#!/usr/bin/env bash
# Checks the Debian package without installing it on this machine: unpacks
# it into a scratch root with dpkg -x, checks what it holds and where, that
# the binary runs, that the unit file passes systemd-analyze verify (when
# the machine has it) and that the maintainer scripts are valid shell.
#
# usage: scripts/deb-test.sh [path/to/portico.deb]   (default: build it)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
deb=${1:-$("$here/scripts/package-deb.sh" --no-build)}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
fail() { echo "deb-test: $*" >&2; exit 1; }

echo "deb-test: $deb"
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
dpkg-deb -x "$deb" "$root"
dpkg-deb -e "$deb" "$root/DEBIAN"

[ "$(dpkg-deb -f "$deb" Package)" = portico ] || fail "the package is not named portico"
grep -q adduser <<<"$(dpkg-deb -f "$deb" Depends)" || fail "Depends lacks adduser"
for f in usr/bin/portico lib/systemd/system/portico.service etc/default/portico \
         usr/share/portico/site/pkg/portico.js usr/share/portico/site/pkg/portico.css \
         usr/share/portico/site/pkg/portico.wasm usr/share/portico/site/favicon.svg usr/share/doc/portico/README.md; do
  [ -f "$root/$f" ] || fail "missing /$f"
done
[ -x "$root/usr/bin/portico" ] || fail "/usr/bin/portico is not executable"
grep -qx /etc/default/portico "$root/DEBIAN/conffiles" || fail "/etc/default/portico is not a conffile"
grep -q '^portico ' <<<"$("$root/usr/bin/portico" --version)" || fail "the binary does not run"
grep -q -- '--tls-cert' <<<"$("$root/usr/bin/portico" serve --help)" || fail "serve --help lacks --tls-cert"

unit="$root/lib/systemd/system/portico.service"
grep -q '^User=portico$' "$unit" || fail "the unit does not run as the user portico"
grep -q '^AmbientCapabilities=CAP_NET_BIND_SERVICE$' "$unit" || fail "the unit cannot bind port 3260"
grep -q '^ExecStart=/usr/bin/portico serve --data-dir /var/lib/portico --site-root /usr/share/portico/site' "$unit" \
  || fail "ExecStart does not use /var/lib/portico and the packaged dashboard"
grep -q '^Restart=on-failure$' "$unit" || fail "the unit does not restart on failure"
for s in postinst prerm postrm; do
  [ -x "$root/DEBIAN/$s" ] || fail "no executable $s"
  sh -n "$root/DEBIAN/$s" || fail "$s is not valid shell"
done

if command -v systemd-analyze >/dev/null; then
  # verify resolves ExecStart's binary inside the scratch root, and needs
  # the system's own targets and slices there to place the unit.
  for u in /lib/systemd/system/*.target /lib/systemd/system/*.slice; do
    [ -e "$root/lib/systemd/system/$(basename "$u")" ] || cp -P "$u" "$root/lib/systemd/system/"
  done
  out=$(systemd-analyze verify --root="$root" /lib/systemd/system/portico.service 2>&1) || {
    echo "$out"; fail "systemd-analyze verify failed"; }
  [ -z "$out" ] || { echo "$out"; fail "systemd-analyze verify warned"; }
  echo "deb-test: systemd-analyze verify: clean"
else
  echo "deb-test: systemd-analyze not on this machine; the unit's checks above only"
fi
echo "deb-test: $(dpkg-deb --contents "$deb" | wc -l) entries, all checks passed"
