#!/usr/bin/env bash
# Usage: scripts/demo.sh
#
# The demo, from a fresh Debian machine, as root. It
#   1. installs what Samepage needs (packages, libvirtd as in shared/TEST-HOST.md, a busybox
#      guest image) and starts three 256 MiB demo guests with shared memfd RAM
#      (samepage-demo-1 and -2 with identical content, samepage-demo-3 with other content);
#   2. builds samepaged and samepage (release);
#   3. writes a demo configuration and per-guest policies under $DEMO (default
#      /var/lib/samepage-demo): guests 1 and 2 in mode "merge" in trust group "demo" (shared
#      pages accounted, zero pages reclaimed in short pauses), guest 3 in mode "report" in a
#      group of its own (read and accounted only); every other guest stays "off";
#   4. starts samepaged on the socket $DEMO/samepaged.sock, with its Prometheus endpoint on
#      127.0.0.1:9469 (SAMEPAGE_DEMO_METRICS), scanning fast for the demo, and, once zero pages
#      came back, prints the host's own memory accounting (Shmem in /proc/meminfo, before and
#      after) next to what samepaged reports reclaimed, what `samepage list` and `samepage
#      stats` show and a few of the metrics; then it sets samepaged back to the defaults' scan
#      rate (the scan-time advisor, a full scan per 200 s), so the daemon left running costs
#      little and the test command can run beside it.
# samepaged keeps running; talk to it with
#   .build/release/samepage --socket /var/lib/samepage-demo/samepaged.sock   (an interactive shell)
# and stop it with: kill $(cat /var/lib/samepage-demo/samepaged.pid)
# Remove the guests with: scripts/testhost/teardown.sh --guests-only
set -euo pipefail
cd "$(dirname "$0")/.."
command -v swift >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"
DEMO="${SAMEPAGE_DEMO_DIR:-/var/lib/samepage-demo}"
SOCKET="$DEMO/samepaged.sock"
# The demo's Prometheus endpoint (not the default 10460, which an installed samepaged uses).
METRICS="${SAMEPAGE_DEMO_METRICS:-127.0.0.1:9469}"

scripts/testhost/demo-guests.sh

echo "== building samepaged and samepage (release)"
swift build -c release --product samepaged 2>&1 | tail -1
swift build -c release --product samepage 2>&1 | tail -1
BIN=.build/release

mkdir -p "$DEMO/guests.d"
cat > "$DEMO/samepaged.toml" <<CONF
[control]
socket = "$SOCKET"
[metrics]
address = "$METRICS"
[scan]
advisor_mode = "none"
pages_to_scan = 4000
sleep_millisecs = 10
[policy]
directory = "$DEMO/guests.d"
[policy.default]
mode = "off"
CONF
printf 'mode = "merge"\ntrust_group = "demo"\n' > "$DEMO/guests.d/samepage-demo-1.toml"
printf 'mode = "merge"\ntrust_group = "demo"\n' > "$DEMO/guests.d/samepage-demo-2.toml"
printf 'mode = "report"\n' > "$DEMO/guests.d/samepage-demo-3.toml"

if [ -f "$DEMO/samepaged.pid" ] && kill -0 "$(cat "$DEMO/samepaged.pid")" 2>/dev/null; then
    echo "== stopping the previous demo samepaged"
    kill "$(cat "$DEMO/samepaged.pid")"
    for _ in $(seq 50); do kill -0 "$(cat "$DEMO/samepaged.pid")" 2>/dev/null || break; sleep 0.1; done
fi
shmem_kib() { awk '/^Shmem:/ {print $2}' /proc/meminfo; }
SHMEM_BEFORE=$(shmem_kib)
echo "== starting samepaged (log: $DEMO/samepaged.log); the host's Shmem now: $((SHMEM_BEFORE / 1024)) MiB"
"$BIN/samepaged" --config "$DEMO/samepaged.toml" --pause-journal "$DEMO/paused.json" </dev/null >"$DEMO/samepaged.log" 2>&1 &
echo $! > "$DEMO/samepaged.pid"
for _ in $(seq 100); do [ -S "$SOCKET" ] && break; sleep 0.1; done
[ -S "$SOCKET" ] || { cat "$DEMO/samepaged.log"; echo "samepaged did not start" >&2; exit 1; }

echo "== scanning, and reclaiming zero pages of guests 1 and 2 in short pauses (up to 3 minutes)"
reclaimed() {
    "$BIN/samepage" --socket "$SOCKET" list --json | python3 -c '
import json, sys
guests = {g["name"]: g for g in json.load(sys.stdin)}
print(min(guests.get(n, {}).get("reclaim", {}).get("bytes_reclaimed", 0) for n in ("samepage-demo-1", "samepage-demo-2")))'
}
for _ in $(seq 180); do
    [ "$(reclaimed)" -ge $((16 << 20)) ] && break
    sleep 1
done
SHMEM_AFTER=$(shmem_kib)
echo
echo "== samepage list"
"$BIN/samepage" --socket "$SOCKET" list
echo
echo "== samepage stats"
"$BIN/samepage" --socket "$SOCKET" stats
echo
echo "== Prometheus metrics (http://$METRICS/metrics), a few of them"
python3 - "http://$METRICS/metrics" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
wanted = ("samepage_sharing_bytes", "samepage_shared_bytes", "samepage_reclaim_punched_bytes_total",
          "samepage_reclaimed_bytes_total", "samepage_reclaim_pause_seconds_count",
          "samepage_scanned_bytes_total", "samepage_tracking_bytes", "samepage_guest_sharing_bytes",
          "samepage_guest_info")
for line in text.splitlines():
    if line.split("{")[0].split(" ")[0] in wanted:
        print(line)
PY
echo
echo "== memory given back, as the host's own accounting saw it"
"$BIN/samepage" --socket "$SOCKET" list --json | python3 -c '
import json, sys
before, after = int(sys.argv[1]), int(sys.argv[2])
total = sum(g.get("reclaim", {}).get("bytes_reclaimed", 0) for g in json.load(sys.stdin))
print(f"samepaged reports {total / 2**20:.1f} MiB reclaimed; the host'"'"'s Shmem went from {before / 1024:.1f} MiB to {after / 1024:.1f} MiB ({(before - after) / 1024:.1f} MiB less)")' "$SHMEM_BEFORE" "$SHMEM_AFTER"
echo
echo "== back to the defaults' scan rate (the scan-time advisor: a full scan per 200 s)"
"$BIN/samepage" --socket "$SOCKET" tune --advisor-mode scan-time --sleep-millisecs 20 >/dev/null
echo "samepaged is still running: $BIN/samepage --socket $SOCKET   (interactive shell)"
echo "stop it with: kill \$(cat $DEMO/samepaged.pid)"
