#!/usr/bin/env bash
# Usage: Benchmarks/busy-host-reclaim.sh [SECONDS] [--hogs | --hogs-for S] [--nice N]
#
# Zero-page reclaim on a host as busy as real hosts are (issue 20's host): four 192 MiB memfd
# guests running the data-set workload (they hash their data set every 2 s, under TCG each keeps
# a vCPU busy) with 32 MiB of zero-filled files each, plus a burst load that keeps each core
# about 60% busy in random bursts of 20 to 300 ms; samepaged (release) with its defaults but a
# 10 s scan-time target, all four guests in mode "zero", default max_pause_ms (10). Runs
# SECONDS (default 150) and prints: zero pages reclaimed, the pauses as QEMU saw them (STOP to
# RESUME; the share within max_pause_ms + 2 ms), what the calls took, the host's CPU pressure
# (some, avg10) sampled every 5 s, the deferrals, and the host's Shmem before and after.
# --hogs: a busy loop per core instead of the bursts (a saturated host): reclaim must wait.
# --hogs-for S: the hogs for the first S seconds only, then nothing: reclaim must resume.
# --nice N: reclaim.pause_thread_nice (default 0, as samepaged's: the pausing thread left as it is).
# The guests are removed at the end. Run as root, with nothing else using the test host.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v swift >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"
SECONDS_TO_RUN=150
HOGS=0
HOGS_FOR=0
NICE=0
while [ $# -gt 0 ]; do
    case "$1" in
    --hogs) HOGS=1; shift ;;
    --hogs-for) HOGS=1; HOGS_FOR="$2"; shift 2 ;;
    --nice) NICE="$2"; shift 2 ;;
    *) SECONDS_TO_RUN="$1"; shift ;;
    esac
done
WORK="$(mktemp -d /tmp/samepage-busy-host.XXXXXX)"
GUESTS=(sp-busy-1 sp-busy-2 sp-busy-3 sp-busy-4)
LOAD_PIDS=()
PID=""
cleanup() {
    for p in "${LOAD_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
    for g in "${GUESTS[@]}"; do scripts/testhost/guest.sh undefine "$g" >/dev/null 2>&1 || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

scripts/testhost/setup.sh >/dev/null
for g in "${GUESTS[@]}"; do
    scripts/testhost/guest.sh define "$g" --memory 192 --ram memfd --workload dataset --fill 32 --start >/dev/null
done
for g in "${GUESTS[@]}"; do
    scripts/testhost/guest.sh wait-ready "$g" 180
    scripts/testhost/guest.sh wait-for "$g" SAMEPAGE-DATASET-HASH 180
done
swift build -c release --product samepaged >/dev/null 2>&1
swift build -c release --product samepage >/dev/null 2>&1
mkdir -p "$WORK/guests.d"
printf '[metrics]\naddress = ""\n[scan]\nadvisor_target_scan_time = 10\n[policy.default]\nmode = "off"\n[reclaim]\npause_thread_nice = %s\n' "$NICE" > "$WORK/samepaged.toml"
for g in "${GUESTS[@]}"; do printf 'mode = "zero"\n' > "$WORK/guests.d/$g.toml"; done

if [ "$HOGS" = 1 ]; then
    for _ in $(seq "$(nproc)"); do sh -c 'while :; do :; done' & LOAD_PIDS+=($!); done
else
    # About 60% of each core, in bursts of 20 to 300 ms at random.
    for _ in $(seq "$(nproc)"); do
        /usr/bin/python3.11 -c '
import random, time
while True:
    burst = random.uniform(0.02, 0.3)
    end = time.monotonic() + burst
    while time.monotonic() < end:
        pass
    time.sleep(burst * 0.4 / 0.6)' & LOAD_PIDS+=($!)
    done
fi
sleep 10  # the kernel's 10-second pressure average catches up
SHMEM_BEFORE=$(awk '/^Shmem:/ {print $2}' /proc/meminfo)
.build/release/samepaged --config "$WORK/samepaged.toml" --socket "$WORK/sock" --policy-dir "$WORK/guests.d" \
    --pause-journal "$WORK/paused.json" </dev/null >"$WORK/log" 2>&1 &
PID=$!
: > "$WORK/pressure"
ELAPSED=0
for _ in $(seq $((SECONDS_TO_RUN / 5))); do
    sleep 5
    ELAPSED=$((ELAPSED + 5))
    if [ "$HOGS_FOR" -gt 0 ] && [ "$ELAPSED" -eq "$HOGS_FOR" ]; then
        for p in "${LOAD_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
        LOAD_PIDS=()
        echo "hogs stopped after $HOGS_FOR s; pauses so far: $(grep -c 'audit: paused' "$WORK/log" || true)"
    fi
    awk '/^some/ {split($2, a, "="); print a[2]}' /proc/pressure/cpu >> "$WORK/pressure"
done
SHMEM_AFTER=$(awk '/^Shmem:/ {print $2}' /proc/meminfo)
.build/release/samepage --socket "$WORK/sock" stats | grep -iE 'freed|zero_pages_reclaimed|bytes_reclaimed|refaulted|deferrals|pauses '
kill "$PID"; wait "$PID" 2>/dev/null || true
PID=""

python3 - "$WORK/log" "$WORK/pressure" "$SHMEM_BEFORE" "$SHMEM_AFTER" <<'PY'
import re, sys
log, pressure, before, after = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
pauses = []
for line in open(log):
    m = re.search(r"audit: paused \S+ \(\S+\) for ([0-9.]+) ms: (\d+) zero pages punched", line)
    if m:
        saw = re.search(r"the guest saw ([0-9.]+) ms", line)
        pauses.append((float(m.group(1)), int(m.group(2)), float(saw.group(1)) if saw else None))
samples = [float(x) for x in open(pressure).read().split()]
print(f"CPU pressure (some, avg10) sampled every 5 s: mean {sum(samples) / max(1, len(samples)):.1f}%, min {min(samples, default=0):.1f}%, max {max(samples, default=0):.1f}%")
print(f"Shmem: {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB after ({(before - after) / 1024:.1f} MiB less)")
def quantiles(values):
    values = sorted(values)
    q = lambda p: values[min(len(values) - 1, int(p * len(values)))]
    return f"p50 {q(0.5):.2f} ms, p90 {q(0.9):.2f} ms, p99 {q(0.99):.2f} ms, max {values[-1]:.2f} ms"
if not pauses:
    print("no pauses")
    sys.exit(0)
pages = sum(p[1] for p in pauses)
print(f"pauses {len(pauses)}, zero pages reclaimed {pages}; calls: {quantiles([p[0] for p in pauses])}")
seen = [p[2] for p in pauses if p[2] is not None]
if seen:
    within = sum(1 for s in seen if s <= 12)
    print(f"as QEMU saw them ({len(seen)} measured): {quantiles(seen)}; within max_pause_ms + 2 ms (12 ms): {within} ({100 * within / len(seen):.1f}%)")
    print(f"pages per ms of guest-seen pause: {pages / sum(seen):.1f}")
PY
