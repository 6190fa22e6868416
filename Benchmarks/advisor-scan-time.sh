#!/usr/bin/env bash
# Usage: Benchmarks/advisor-scan-time.sh [TARGET_SECONDS] [RUN_SECONDS]
#
# The scan-time advisor against its target: starts the three demo guests
# (scripts/testhost/demo-guests.sh), runs samepaged (release) with all three in policy mode
# "report", the advisor on (`advisor_mode = "scan-time"`) with advisor_target_scan_time =
# TARGET_SECONDS (default 15) and the other knobs at their defaults, for RUN_SECONDS (default
# 300). It polls `samepage stats --json` every second, times each full scan from one increment
# of full_scans to the next, leaves out the first four (the advisor's average settling), and
# prints the periods: mean, min, max, and how many were within ±35% of the target, with
# pages_to_scan and the scanning thread's CPU. Run as root; the guests stay up afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v swift >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"
TARGET="${1:-15}"
RUN="${2:-300}"
WORK=$(mktemp -d /tmp/samepage-advisor-bench.XXXXXX)
PID=
trap '[ -z "$PID" ] || { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; } || true' EXIT

scripts/testhost/demo-guests.sh >/dev/null
swift build -c release --product samepaged >/dev/null 2>&1
swift build -c release --product samepage >/dev/null 2>&1
mkdir -p "$WORK/guests.d"
printf '[metrics]\naddress = ""\n[scan]\nadvisor_mode = "scan-time"\nadvisor_target_scan_time = %s\n[policy.default]\nmode = "off"\n' "$TARGET" > "$WORK/samepaged.toml"
for n in 1 2 3; do printf 'mode = "report"\ntrust_group = "demo"\n' > "$WORK/guests.d/samepage-demo-$n.toml"; done

.build/release/samepaged --config "$WORK/samepaged.toml" --socket "$WORK/sock" --policy-dir "$WORK/guests.d" \
    --pause-journal "$WORK/paused.json" </dev/null >"$WORK/log" 2>&1 &
PID=$!
sleep 2
END=$(( $(date +%s) + RUN ))
while [ "$(date +%s)" -lt "$END" ]; do
    printf '%s ' "$(date +%s.%N)"
    .build/release/samepage --socket "$WORK/sock" stats --json | tr -d '\n'
    echo
    sleep 1
done > "$WORK/samples"

python3 - "$WORK/samples" "$TARGET" <<'PY'
import json, sys
target = float(sys.argv[2])
changes, last = [], None
for line in open(sys.argv[1]):
    at, text = line.split(" ", 1)
    stats = json.loads(text)
    scans = stats["full_scans"]
    if last is not None and scans > last:
        changes.append((float(at), scans, stats["pages_to_scan"], stats.get("full_scan_cpu_percent", 0)))
    last = scans
periods = [(b[0] - a[0]) / (b[1] - a[1]) for a, b in zip(changes, changes[1:])][4:]
if not periods:
    sys.exit(f"too few full scans: {len(changes)}")
within = sum(1 for p in periods if abs(p - target) <= 0.35 * target)
print(f"target {target:.0f} s: {len(periods)} full scans timed, mean {sum(periods) / len(periods):.1f} s, "
      f"min {min(periods):.1f} s, max {max(periods):.1f} s, within ±35%: {within} of {len(periods)}")
print(f"pages_to_scan at the end {changes[-1][2]}, scanning thread CPU over the last scan {changes[-1][3]:.1f}%")
PY
