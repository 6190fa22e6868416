#!/usr/bin/env bash
# Usage: Benchmarks/agent-cpu.sh [SECONDS] [EXTRA_PROCESSES]
#
# samepaged's own CPU on a quiet host and on a host with many more processes: starts two
# 192 MiB memfd guests (scripts/testhost/guest.sh), runs samepaged (release) with both in
# policy mode "zero" and a fixed scan rate (the advisor off: advisor_mode = "none", so
# pages_to_scan = 1000, sleep_millisecs = 20, the figures BENCHMARKS.md was measured with),
# and reads its user+system time from
# /proc/PID/stat over SECONDS (default 60) twice: once as the host is, once with
# EXTRA_PROCESSES (default 3000) idle processes added (each `sleep`, a process of its own
# with its own maps). Prints % of one core for each, and how many maps files the mapping
# index read. Run as root; the guests are removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v swift >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"
SPAN="${1:-60}"
EXTRA="${2:-3000}"
WORK=$(mktemp -d /tmp/samepage-cpu-bench.XXXXXX)
GUESTS=(sp-bench-cpu-1 sp-bench-cpu-2)
SLEEPERS=()
PID=
cleanup() {
    [ -z "$PID" ] || { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; } || true
    [ ${#SLEEPERS[@]} -eq 0 ] || kill "${SLEEPERS[@]}" 2>/dev/null || true
    for g in "${GUESTS[@]}"; do scripts/testhost/guest.sh undefine "$g" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

swift build -c release --product samepaged >/dev/null 2>&1
for g in "${GUESTS[@]}"; do
    scripts/testhost/guest.sh undefine "$g" >/dev/null 2>&1 || true
    scripts/testhost/guest.sh define "$g" --memory 192 --ram memfd --fill 16 --start >/dev/null
    scripts/testhost/guest.sh wait-ready "$g" 120 >/dev/null
done
mkdir -p "$WORK/guests.d"
printf '[metrics]\naddress = ""\n[scan]\nadvisor_mode = "none"\n[policy.default]\nmode = "off"\n' > "$WORK/samepaged.toml"
for g in "${GUESTS[@]}"; do printf 'mode = "zero"\n' > "$WORK/guests.d/$g.toml"; done
.build/release/samepaged --config "$WORK/samepaged.toml" --socket "$WORK/sock" --policy-dir "$WORK/guests.d" \
    --pause-journal "$WORK/paused.json" </dev/null >"$WORK/log" 2>&1 &
PID=$!
sleep 20   # mapped, first scans and reclaim done

ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
HZ=$(getconf CLK_TCK)
measure() {
    local before after
    before=$(ticks); sleep "$SPAN"; after=$(ticks)
    python3 -c "print(f'{($after - $before) / $HZ / $SPAN * 100:.1f}')"
}
procs=$(ls -d /proc/[0-9]* | wc -l)
quiet=$(measure)
echo "quiet host ($procs processes): samepaged ${quiet}% of a core"
for _ in $(seq "$EXTRA"); do sleep 100000 & SLEEPERS+=($!); done
sleep 6   # one reconcile sees them all as new
procs=$(ls -d /proc/[0-9]* | wc -l)
busy=$(measure)
echo "busy host ($procs processes): samepaged ${busy}% of a core"
