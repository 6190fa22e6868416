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
#      127.0.0.1:9469 (SAMEPAGE_DEMO_METRICS), and, after a short scan, prints what
#      `samepage list` and `samepage stats` show and a few of the metrics.
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
echo "== starting samepaged (log: $DEMO/samepaged.log)"
"$BIN/samepaged" --config "$DEMO/samepaged.toml" --pause-journal "$DEMO/paused.json" </dev/null >"$DEMO/samepaged.log" 2>&1 &
echo $! > "$DEMO/samepaged.pid"
for _ in $(seq 100); do [ -S "$SOCKET" ] && break; sleep 0.1; done
[ -S "$SOCKET" ] || { cat "$DEMO/samepaged.log"; echo "samepaged did not start" >&2; exit 1; }

echo "== scanning for a few seconds"
for _ in $(seq 60); do
    scans=$("$BIN/samepage" --socket "$SOCKET" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["full_scans"])')
    [ "$scans" -ge 3 ] && break
    sleep 1
done
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
echo "samepaged is still running: $BIN/samepage --socket $SOCKET   (interactive shell)"
echo "stop it with: kill \$(cat $DEMO/samepaged.pid)"
