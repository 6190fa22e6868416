#!/usr/bin/env bash
# Usage: selftest.sh
#
# End-to-end check of the test-host scripts, ON A DEDICATED TEST MACHINE ONLY (it rewrites
# /etc/libvirt/qemu.conf and starts/stops libvirtd through setup.sh/teardown.sh, and starts
# one libvirtd of its own to play "a libvirtd setup.sh did not start"):
#   1. setup.sh; four 256 MiB "dataset" guests: two memfd, one file, one anonymous RAM;
#      each must print SAMEPAGE-GUEST-READY; /run/libvirt/qemu/NAME.pid must exist;
#      /proc/PID/maps must show a rw-s "/memfd:" mapping of the RAM size (memfd guests), a
#      rw-s mapping of a file under memory_backing_dir (file guest), neither (anonymous);
#      every guest's SAMEPAGE-DATASET-HASH / -CHECK must equal $STATE/dataset.md5.
#   2. teardown.sh: no QEMU left, no domain, the daemons setup.sh started are gone.
#   3. setup.sh must refuse while a domain it did not create exists (libvirtd up, and down);
#      a qemu.conf change under a libvirtd it did not start must be reported, not applied.
#   4. setup.sh again: libvirtd left running, no guests.
# Exits non-zero at the first failed check.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

case "${1:-}" in
"") ;;
-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
*) die "unknown argument '$1' (usage: selftest.sh)" ;;
esac
require_root

S="$TESTHOST_SCRIPTS"
G="$S/guest.sh"
MEM=256
FOREIGN=samepage-selftest-foreign
fail() { die "FAILED: $*"; }
pass() { printf '%s: ok: %s\n' "$PROG" "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# mapping_lines PID -> "size perms path" for every mapping of PID
mapping_lines() {
    python3 - "$1" <<'EOF'
import sys
for l in open(f"/proc/{sys.argv[1]}/maps"):
    f = l.split(None, 5)
    a, b = (int(x, 16) for x in f[0].split("-"))
    print(b - a, f[1], f[5].strip() if len(f) > 5 else "")
EOF
}

# ---- 1 -------------------------------------------------------------------------------
"$S/setup.sh"
expected="$(cat "$STATE/dataset.md5")"
membacking="$(sed -n 's/^memory_backing_dir = "\(.*\)"$/\1/p' "$QEMU_CONF")"
[ -n "$membacking" ] || fail "no memory_backing_dir in $QEMU_CONF"

guests=(st-memfd-1:memfd st-memfd-2:memfd st-file:file st-anon:anonymous)
declare -A qpid
for g in "${guests[@]}"; do
    n="${g%%:*}" ram="${g#*:}"
    t0="$(now)"
    "$G" define "$n" --memory "$MEM" --ram "$ram" --workload dataset --fill 8 --start
    "$G" wait-ready "$n" 120
    up="$(grep -m1 -o 'SAMEPAGE-GUEST-READY uptime=[0-9.]*' "$("$G" serial "$n")" | cut -d= -f2)"
    printf '%s: boot %-11s %-9s start->READY %s s wall, guest uptime at READY %s s\n' \
        "$PROG" "$n" "$ram" "$(elapsed "$t0")" "$up" >&2
done

size=$((MEM * 1024 * 1024))
for g in "${guests[@]}"; do
    n="${g%%:*}" ram="${g#*:}"
    [ -s "/run/libvirt/qemu/$n.pid" ] || fail "/run/libvirt/qemu/$n.pid missing"
    pid="$("$G" pid "$n")"; qpid[$n]="$pid"
    maps="$(mapping_lines "$pid")"
    memfd="$(awk -v s="$size" '$1 == s && $2 == "rw-s" && $3 ~ /^\/memfd:/' <<<"$maps")"
    filem="$(awk -v s="$size" -v d="$membacking/" '$1 == s && $2 == "rw-s" && index($3, d) == 1' <<<"$maps")"
    anon="$(awk -v s="$size" '$1 == s && $2 == "rw-p" && NF == 2' <<<"$maps")"
    case "$ram" in
    memfd) [ -n "$memfd" ] && [ -z "$filem" ] || fail "$n: no rw-s /memfd: mapping of $size bytes" ;;
    file) [ -n "$filem" ] && [ -z "$memfd" ] || fail "$n: no rw-s mapping under $membacking" ;;
    anonymous) [ -z "$memfd" ] && [ -z "$filem" ] && [ -n "$anon" ] || fail "$n: expected only private anonymous RAM" ;;
    esac
    pass "$n (pid $pid, $ram): $(printf '%s' "$memfd$filem$anon" | head -n1 | cut -d' ' -f2-)"
done

for g in "${guests[@]}"; do
    n="${g%%:*}"
    "$G" wait-for "$n" 'SAMEPAGE-DATASET-CHECK' 180 || fail "$n: no dataset check line"
    log="$("$G" serial "$n")"
    hashes="$(grep -oE 'SAMEPAGE-DATASET-(HASH|CHECK) [0-9a-f]+' "$log" | cut -d' ' -f2 | sort -u)"
    [ "$hashes" = "$expected" ] || fail "$n: dataset hashes '$hashes' != expected '$expected'"
    pass "$n: dataset hash and $(grep -c 'SAMEPAGE-DATASET-CHECK' "$log") check(s) = $expected"
done

# ---- 2 -------------------------------------------------------------------------------
lv="$(our_daemon_pid libvirtd)"; vl="$(our_daemon_pid virtlogd)"
"$S/teardown.sh"
for n in "${!qpid[@]}"; do
    [ ! -d "/proc/${qpid[$n]}" ] || fail "QEMU of $n (pid ${qpid[$n]}) still runs"
    [ ! -e "/run/libvirt/qemu/$n.pid" ] && [ ! -e "/etc/libvirt/qemu/$n.xml" ] || fail "$n still known to libvirt"
done
! pgrep -x qemu-system-x86 >/dev/null || fail "a qemu-system-x86_64 process is still running"
[ -z "$lv" ] || [ ! -d "/proc/$lv" ] || fail "libvirtd $lv still runs"
[ -z "$vl" ] || [ ! -d "/proc/$vl" ] || fail "virtlogd $vl still runs"
[ -z "$(recorded_domains)" ] || fail "$STATE/domains not empty"
pass "teardown: no QEMU, no domains, daemons ${lv:-?}/${vl:-?} stopped"

# ---- 3 -------------------------------------------------------------------------------
"$S/setup.sh" 2>/dev/null
cat >"$STATE/foreign.xml" <<EOF
<domain type='qemu'><name>$FOREIGN</name><memory unit='MiB'>64</memory>
<os><type arch='x86_64'>hvm</type></os></domain>
EOF
virsh_ define "$STATE/foreign.xml" >/dev/null
if out="$("$S/setup.sh" 2>&1)"; then fail "setup.sh ran although foreign domain $FOREIGN exists"; fi
grep -q "$FOREIGN" <<<"$out" || fail "setup.sh refused without naming $FOREIGN: $out"
pass "setup.sh refuses with libvirtd running: $(grep -m1 error <<<"$out")"

"$S/teardown.sh" 2>/dev/null         # stops our daemons; the foreign definition stays
if out="$("$S/setup.sh" 2>&1)"; then fail "setup.sh (libvirtd down) ran although $FOREIGN is defined"; fi
grep -q "$FOREIGN" <<<"$out" || fail "setup.sh (libvirtd down) refused without naming $FOREIGN: $out"
pass "setup.sh refuses with libvirtd down (definition in /etc/libvirt/qemu)"

# A libvirtd that setup.sh did not start.
(cd / && exec libvirtd -d </dev/null >/dev/null 2>&1)
deadline=$((SECONDS + 30)); until libvirt_reachable; do [ $SECONDS -lt $deadline ] || fail "own libvirtd did not start"; sleep 0.3; done
own="$(tr -dc '0-9' <"$LIBVIRTD_PIDFILE")"
virsh_ undefine "$FOREIGN" >/dev/null
rm -f "$STATE/foreign.xml"
"$S/setup.sh" 2>/dev/null || fail "setup.sh failed next to an unchanged-config foreign libvirtd"
[ "$(libvirtd_pid)" = "$own" ] || fail "setup.sh replaced a libvirtd it did not start"
pass "setup.sh leaves a libvirtd it did not start alone (pid $own)"
cp -p "$QEMU_CONF" "$STATE/qemu.conf.selftest"
sed -i 's/^dynamic_ownership = 0$/dynamic_ownership = 1/' "$QEMU_CONF"
if "$S/setup.sh" 2>/dev/null; then fail "setup.sh did not report the un-applied qemu.conf change"; fi
if "$S/setup.sh" 2>/dev/null; then fail "second setup.sh forgot the un-applied qemu.conf change"; fi
[ "$(libvirtd_pid)" = "$own" ] || fail "setup.sh restarted a libvirtd it did not start"
cmp -s "$QEMU_CONF" "$STATE/qemu.conf.selftest" || fail "setup.sh did not restore its qemu.conf settings"
rm -f "$STATE/qemu.conf.selftest"
pass "qemu.conf change under a foreign libvirtd reported (twice), libvirtd $own untouched"
kill -TERM "$own"
for _ in $(seq 1 150); do [ -d "/proc/$own" ] || break; sleep 0.1; done
[ ! -d "/proc/$own" ] || fail "own libvirtd $own did not stop"

# ---- 4 -------------------------------------------------------------------------------
"$S/setup.sh" 2>/dev/null
[ -n "$(our_daemon_pid libvirtd)" ] || fail "libvirtd not running after the final setup.sh"
[ -z "$(libvirt_domains)" ] || fail "domains left: $(libvirt_domains)"
pass "final: libvirtd $(our_daemon_pid libvirtd) running (started by setup.sh), no domains"
printf '%s: ALL CHECKS PASSED\n' "$PROG" >&2
