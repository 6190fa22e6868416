#!/usr/bin/env bash
# Usage: Benchmarks/first-reclaim.sh [GUEST_MIB] [--fill MIB] [--seconds N]
#
# How soon a new guest's zero pages come back on default settings, and how fast they keep
# coming: one memfd guest (GUEST_MIB, default 256) with --fill MiB (default 32) of zero-filled
# files, samepaged (release) with the built-in defaults (the scan-time advisor aiming at a full
# scan per 200 s, max_pause_ms 10, 200 ms of pause a minute), the guest in mode "zero". Prints
# the seconds from samepaged's start to its first reclaimed page, what had come back 60 s after
# the start and at the end (--seconds, default 120), the rate from 60 s to the end as bytes an
# hour, and the pages punched per millisecond of pause (the calls, and as the guest saw them).
# The guest is removed at the end. Run as root, with nothing else using the test host.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v swift >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"
MIB=256
FILL=32
RUN_SECONDS=120
while [ $# -gt 0 ]; do
    case "$1" in
    --fill) FILL="$2"; shift 2 ;;
    --seconds) RUN_SECONDS="$2"; shift 2 ;;
    *) MIB="$1"; shift ;;
    esac
done
[ "$RUN_SECONDS" -gt 60 ] || { echo "--seconds must be more than 60" >&2; exit 2; }
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
scripts/testhost/guest.sh define "$GUEST" --memory "$MIB" --ram memfd --fill "$FILL" --start >/dev/null
scripts/testhost/guest.sh wait-for "$GUEST" SAMEPAGE-FILL-DONE 900 >/dev/null
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
for second in $(seq 1 "$RUN_SECONDS"); do
    sleep 1
    bytes=$(reclaimed)
    if [ -z "$FIRST" ] && [ "$bytes" -gt 0 ]; then
        FIRST=$(python3 -c "import time; print(f'{time.time() - $START:.1f}')")
    fi
    if [ "$second" = 60 ]; then AT60=$bytes; T60=$(date +%s.%N); fi
done
ATEND=$(reclaimed)
TEND=$(date +%s.%N)
echo "first reclaimed page ${FIRST:-never (within $RUN_SECONDS s)} s after samepaged started; reclaimed by 60 s: $((AT60 >> 20)) MiB, by $RUN_SECONDS s: $((ATEND >> 20)) MiB"
python3 -c "print(f'from 60 s to the end ({$TEND - $T60:.0f} s): {($ATEND - $AT60) * 3600 / ($TEND - $T60) / 2**20:.0f} MiB an hour')"
python3 - "$WORK/log" <<'PY'
import re, sys
calls = seen = 0.0
pages = pauses = 0
for line in open(sys.argv[1]):
    m = re.search(r"audit: paused \S+ \(\S+\) for ([0-9.]+) ms: (\d+) zero pages punched", line)
    if m:
        pauses += 1
        calls += float(m.group(1))
        pages += int(m.group(2))
        saw = re.search(r"the guest saw ([0-9.]+) ms", line)
        seen += float(saw.group(1)) if saw else float(m.group(1))
print(f"pauses: {pauses}, {pages} pages punched; {pages / max(calls, 1e-9):.1f} pages per ms of the calls, {pages / max(seen, 1e-9):.1f} per ms the guest saw")
PY
