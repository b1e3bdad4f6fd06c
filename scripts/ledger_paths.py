#!/usr/bin/env python3
"""Reads the paths a ledger run used (its `--policy group-by-prio` lines:
`ledger: in use from HH:MM:SS.s: PORTAL ... (priority P)` at each change,
`ledger: path PORTAL: N commands GOOD, the last at HH:MM:SS.s` per path).
Times are UTC times of day; a run shorter than 12 hours may cross midnight.

usage: ledger_paths.py FILE at HH:MM:SS.s    the portals in use then ("none")
       ledger_paths.py FILE final            the portals in use at the end
       ledger_paths.py FILE ever             every portal ever in use
       ledger_paths.py FILE used-after HH:MM:SS.s PORTAL
                                             exit 0 if PORTAL ended a command GOOD after then
"""
import re
import sys


def seconds(tod):
    h, m, s = tod.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def read(path):
    timeline, last_good = [], {}
    for line in open(path):
        m = re.match(r"ledger: in use from (\S+): (.*)$", line)
        if m:
            portals = [] if m.group(2) == "none" else re.sub(r" \(priority \d+\)$", "", m.group(2)).split()
            timeline.append((m.group(1), sorted(portals)))
        m = re.match(r"ledger: path (\S+): \d+ commands GOOD, the last at (\S+)$", line)
        if m:
            last_good[m.group(1)] = m.group(2)
    if not timeline:
        sys.exit(f"{path}: no paths in use recorded (was the ledger run with --policy group-by-prio?)")
    return timeline, last_good


def main():
    path, what, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    timeline, last_good = read(path)
    origin = seconds(timeline[0][0])

    def since_start(tod):
        t = seconds(tod) - origin
        return t + 86400 if t < -43200 else t

    def told(portals):
        return " ".join(portals) if portals else "none"

    if what == "at":
        t = since_start(rest[0])
        now = []
        for at, portals in timeline:
            if since_start(at) <= t:
                now = portals
        print(told(now))
    elif what == "final":
        print(told(timeline[-1][1]))
    elif what == "ever":
        print(told(sorted({p for _, portals in timeline for p in portals})))
    elif what == "used-after":
        last = last_good.get(rest[1])
        sys.exit(0 if last is not None and since_start(last) > since_start(rest[0]) else 1)
    else:
        sys.exit(__doc__)


main()
