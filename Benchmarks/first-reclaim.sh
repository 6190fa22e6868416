#!/usr/bin/env bash
# Usage: Benchmarks/first-reclaim.sh [GUEST_MIB]
#
# How soon a new guest's zero pages come back on default settings: one memfd guest
# (GUEST_MIB, default 256) with 32 MiB of zero-filled files, samepaged (release) with the
# built-in defaults (the scan-time advisor aiming at a full scan per 200 s, max_pause_ms 10),
# the guest in mode "zero". Prints the seconds from samepaged's start to its first reclaimed
# page, and what had come back 60 and 120 s after the start. The guest is removed at the end.
# Run as root, with nothing else using the test host.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v swift >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"
MIB="${1:-256}"
GUEST=sp-first-reclaim
WORK="$(mktemp -d /tmp/samepage-first-reclaim.XXXXXX)"
PID=""
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
    scripts/testhost/guest.sh undefine "$GUEST" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
scripts/testhost/setup.sh >/dev/null
scripts/testhost/guest.sh define "$GUEST" --memory "$MIB" --ram memfd --fill 32 --start >/dev/null
scripts/testhost/guest.sh wait-for "$GUEST" SAMEPAGE-FILL-DONE 180 >/dev/null
swift build -c release --product samepaged >/dev/null 2>&1
swift build -c release --product samepage >/dev/null 2>&1
mkdir -p "$WORK/guests.d"
printf '[metrics]\naddress = ""\n[policy.default]\nmode = "off"\n' > "$WORK/samepaged.toml"
printf 'mode = "zero"\n' > "$WORK/guests.d/$GUEST.toml"
START=$(date +%s.%N)
.build/release/samepaged --config "$WORK/samepaged.toml" --socket "$WORK/sock" --policy-dir "$WORK/guests.d" \
    --pause-journal "$WORK/paused.json" </dev/null >"$WORK/log" 2>&1 &
PID=$!
reclaimed() {
    .build/release/samepage --socket "$WORK/sock" list --json 2>/dev/null | python3 -c '
import json, sys
print(sum(g.get("reclaim", {}).get("bytes_reclaimed", 0) for g in json.load(sys.stdin)))' 2>/dev/null || echo 0
}
FIRST=""
AT60=0
for second in $(seq 1 120); do
    sleep 1
    bytes=$(reclaimed)
    if [ -z "$FIRST" ] && [ "$bytes" -gt 0 ]; then
        FIRST=$(python3 -c "import time; print(f'{time.time() - $START:.1f}')")
    fi
    [ "$second" = 60 ] && AT60=$bytes
done
AT120=$(reclaimed)
echo "first reclaimed page ${FIRST:-never (within 120 s)} s after samepaged started; reclaimed by 60 s: $((AT60 >> 20)) MiB, by 120 s: $((AT120 >> 20)) MiB"
grep -c "audit: paused" "$WORK/log" | sed 's/^/pauses: /'
