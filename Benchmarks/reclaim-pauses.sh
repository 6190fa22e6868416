#!/usr/bin/env bash
# Usage: Benchmarks/reclaim-pauses.sh [SECONDS]
#
# Pause time of zero-page reclaim on the demo guests: starts the three demo guests
# (scripts/testhost/demo-guests.sh), runs samepaged (release) with all three in policy mode
# "zero" and the default pause budget (max_pause_ms = 10, max_pause_ms_per_minute = 200),
# lets it reclaim for SECONDS (default 120), then reads its audit log and prints the pause
# lengths (p50, p90, p99, max), pages reclaimed per millisecond of pause, and what the
# daemon's own counters say. Run as root; the guests stay up afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v swift >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"
SECONDS_TO_RUN="${1:-120}"
WORK=$(mktemp -d /tmp/samepage-reclaim-bench.XXXXXX)
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true' EXIT

scripts/testhost/demo-guests.sh >/dev/null
swift build -c release --product samepaged >/dev/null 2>&1
swift build -c release --product samepage >/dev/null 2>&1
mkdir -p "$WORK/guests.d"
printf '[metrics]\naddress = ""\n[scan]\nadvisor_mode = "none"\npages_to_scan = 4000\nsleep_millisecs = 10\n[policy.default]\nmode = "off"\n' > "$WORK/samepaged.toml"
for n in 1 2 3; do printf 'mode = "zero"\n' > "$WORK/guests.d/samepage-demo-$n.toml"; done

.build/release/samepaged --config "$WORK/samepaged.toml" --socket "$WORK/sock" --policy-dir "$WORK/guests.d" \
    --pause-journal "$WORK/paused.json" </dev/null >"$WORK/log" 2>&1 &
PID=$!
sleep "$SECONDS_TO_RUN"
.build/release/samepage --socket "$WORK/sock" stats | grep -E 'zero_pages_reclaimed|bytes_reclaimed|pauses|pause_ms'
kill "$PID"; wait "$PID" 2>/dev/null || true

python3 - "$WORK/log" <<'PY'
import re, sys
pauses, pages = [], 0
for line in open(sys.argv[1]):
    m = re.search(r"audit: paused \S+ \(\S+\) for ([0-9.]+) ms: (\d+) zero pages punched", line)
    if m:
        pauses.append(float(m.group(1)))
        pages += int(m.group(2))
if not pauses:
    sys.exit("no pauses in the log")
pauses.sort()
q = lambda p: pauses[min(len(pauses) - 1, int(p * len(pauses)))]
print(f"pauses {len(pauses)}: p50 {q(0.5):.2f} ms, p90 {q(0.9):.2f} ms, p99 {q(0.99):.2f} ms, max {pauses[-1]:.2f} ms")
print(f"pages reclaimed {pages}, {pages / sum(pauses):.1f} pages per ms of pause, {sum(1 for p in pauses if p > 10)} pauses over 10 ms")
PY
