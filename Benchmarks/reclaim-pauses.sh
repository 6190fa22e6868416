#!/usr/bin/env bash
# Usage: Benchmarks/reclaim-pauses.sh [SECONDS] [--hogs] [--qmp]
#
# Pause time of zero-page reclaim on the demo guests: starts the three demo guests
# (scripts/testhost/demo-guests.sh), runs samepaged (release) with all three in policy mode
# "zero" and the default pause budget (max_pause_ms = 10, max_pause_ms_per_minute = 200) and
# the default reclaim.max_cpu_pressure, lets it reclaim for SECONDS (default 120), then reads
# its audit log and prints the pause lengths (p50, p90, p99, max) both from the libvirt calls
# (suspend call to the return of resume) and as the guest saw them (QEMU's STOP to RESUME),
# pages reclaimed per millisecond of pause, and what the daemon's own counters say.
#
# --hogs: a CPU hog per core runs for the first SECONDS, then stops, and samepaged runs 60 s
# more: pauses are reported apart for the time with hogs and the time after, with the
# deferrals the daemon counted.
# --qmp: three 256 MiB plain QEMU guests outside libvirt (scripts/testhost/qemu-guest.sh,
# samepage-qdemo-1..3) instead, paused over their QMP sockets. Run as root; the guests stay
# up afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v swift >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"
SECONDS_TO_RUN=120
HOGS=0
QMP=0
for argument in "$@"; do
    case "$argument" in
    --hogs) HOGS=1 ;;
    --qmp) QMP=1 ;;
    *) SECONDS_TO_RUN="$argument" ;;
    esac
done
WORK=$(mktemp -d /tmp/samepage-reclaim-bench.XXXXXX)
HOG_PIDS=()
PID=
cleanup() {
    for p in "${HOG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "$PID" ] || return 0
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
}
trap cleanup EXIT

GUEST=samepage-demo
if [ "$QMP" = 1 ]; then
    GUEST=samepage-qdemo
    for n in 1 2 3; do
        [ -n "$(scripts/testhost/qemu-guest.sh pid "$GUEST-$n" 2>/dev/null)" ] ||
            scripts/testhost/qemu-guest.sh start "$GUEST-$n" --layout plain --memory 256 >/dev/null
    done
    for n in 1 2 3; do scripts/testhost/qemu-guest.sh wait-ready "$GUEST-$n" 120; done
else
    scripts/testhost/demo-guests.sh >/dev/null
fi
swift build -c release --product samepaged >/dev/null 2>&1
swift build -c release --product samepage >/dev/null 2>&1
mkdir -p "$WORK/guests.d"
printf '[metrics]\naddress = ""\n[scan]\nadvisor_mode = "none"\npages_to_scan = 4000\nsleep_millisecs = 10\n[policy.default]\nmode = "off"\n' > "$WORK/samepaged.toml"
for n in 1 2 3; do printf 'mode = "zero"\n' > "$WORK/guests.d/$GUEST-$n.toml"; done

if [ "$HOGS" = 1 ]; then
    for _ in $(seq "$(nproc)"); do sh -c 'while :; do :; done' & HOG_PIDS+=($!); done
    sleep 10  # the kernel's 10-second pressure average catches up
fi
HOGS_START=$(date +%s)
.build/release/samepaged --config "$WORK/samepaged.toml" --socket "$WORK/sock" --policy-dir "$WORK/guests.d" \
    --pause-journal "$WORK/paused.json" </dev/null >"$WORK/log" 2>&1 &
PID=$!
sleep "$SECONDS_TO_RUN"
HOGS_END=$(date +%s)
if [ "$HOGS" = 1 ]; then
    for p in "${HOG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    HOG_PIDS=()
    .build/release/samepage --socket "$WORK/sock" stats | grep -E 'deferrals|pauses ' | sed 's/^/with hogs: /'
    sleep 60
else
    HOGS_END=0
fi
.build/release/samepage --socket "$WORK/sock" stats | grep -E 'zero_pages_reclaimed|bytes_reclaimed|pauses|pause_ms|guest_seen|deferrals'
kill "$PID"; wait "$PID" 2>/dev/null || true

python3 - "$WORK/log" "$HOGS_START" "$HOGS_END" <<'PY'
import re, sys, datetime
log, hogs_start, hogs_end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
periods = {"with hogs": [], "after the hogs": []} if hogs_end else {"all": []}
for line in open(log):
    m = re.search(r"audit: paused \S+ \(\S+\) for ([0-9.]+) ms: (\d+) zero pages punched", line)
    if not m:
        continue
    saw = re.search(r"the guest saw ([0-9.]+) ms", line)
    at = datetime.datetime.fromisoformat(line.split(" ")[0]).timestamp()
    key = "all" if not hogs_end else ("with hogs" if at <= hogs_end else "after the hogs")
    periods[key].append((float(m.group(1)), int(m.group(2)), float(saw.group(1)) if saw else None))
def quantiles(values):
    values = sorted(values)
    q = lambda p: values[min(len(values) - 1, int(p * len(values)))]
    return f"p50 {q(0.5):.2f} ms, p90 {q(0.9):.2f} ms, p99 {q(0.99):.2f} ms, max {values[-1]:.2f} ms"
for name, pauses in periods.items():
    if not pauses:
        print(f"{name}: no pauses")
        continue
    calls = [p[0] for p in pauses]
    seen = [p[2] for p in pauses if p[2] is not None]
    pages = sum(p[1] for p in pauses)
    print(f"{name}: pauses {len(pauses)}; calls: {quantiles(calls)}; over 10 ms: {sum(1 for c in calls if c > 10)}")
    if seen:
        within = sum(1 for s in seen if s <= 12)
        print(f"{name}: guest saw ({len(seen)} measured): {quantiles(seen)}; within 12 ms: {within} ({100 * within / len(seen):.1f}%)")
    print(f"{name}: pages reclaimed {pages}, {pages / sum(calls):.1f} pages per ms of pause")
PY
