#!/usr/bin/env bash
# Usage:
#   guest.sh define NAME --memory MiB [--ram memfd|file|anonymous] [--workload idle|dataset]
#                        [--fill MB] [--fill-seed STRING] [--start]
#   guest.sh start NAME              start (no-op if running); clears the serial log first
#   guest.sh destroy NAME            hard-stop (no-op if not running)
#   guest.sh undefine NAME           destroy if running, undefine, forget the name
#   guest.sh serial NAME             print the serial log path ($STATE/serial/NAME.log)
#   guest.sh wait-ready NAME [TIMEOUT_S]          wait for SAMEPAGE-GUEST-READY (default 60 s)
#   guest.sh wait-for NAME PATTERN [TIMEOUT_S]    wait for a line matching grep -E PATTERN
#   guest.sh pid NAME                print the QEMU pid (/run/libvirt/qemu/NAME.pid)
#   guest.sh list                    recorded guests and their state
#
# Test guests for Samepage: <domain type='qemu'> (TCG; nested KVM hangs here), 1 vCPU, direct
# kernel boot of $STATE/vmlinuz + $STATE/guest-initrd.img (see guest-init.sh for workloads),
# serial console to $STATE/serial/NAME.log, no disks, no network, <memballoon model='none'/>.
# RAM: memfd (default) = <memoryBacking><source type='memfd'/><access mode='shared'/>;
#      file = <source type='file'/> + shared access, a file under qemu.conf memory_backing_dir;
#      anonymous = no <memoryBacking>.
# Only acts on domains it defined itself (recorded in $STATE/domains). Run setup.sh first.
# State: SAMEPAGE_TESTHOST_DIR (default /var/lib/samepage-testhost).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

need_name() {
    [ -n "${1:-}" ] || die "missing guest NAME (see guest.sh --help)"
    valid_name "$1" || die "invalid guest name '$1' (letters, digits, _ . -; at most 63 chars)"
}

# Refuse to touch domains these scripts did not create.
need_ours() {
    domain_recorded "$1" ||
        die "domain '$1' was not defined by guest.sh (not in $STATE/domains); leaving it alone"
}

serial_log() { printf '%s\n' "$STATE/serial/$1.log"; }

cmd_define() {
    local name="${1:-}"; need_name "$name"; shift
    local memory="" ram=memfd workload=idle fill=0 fillseed="" start=0
    while [ $# -gt 0 ]; do
        case "$1" in
        --memory) memory="${2:-}"; shift 2 || die "--memory needs a value" ;;
        --ram) ram="${2:-}"; shift 2 || die "--ram needs a value" ;;
        --workload) workload="${2:-}"; shift 2 || die "--workload needs a value" ;;
        --fill) fill="${2:-}"; shift 2 || die "--fill needs a value" ;;
        --fill-seed) fillseed="${2:-}"; shift 2 || die "--fill-seed needs a value" ;;
        --start) start=1; shift ;;
        *) die "define: unknown option '$1'" ;;
        esac
    done
    [[ "$memory" =~ ^[0-9]+$ ]] && [ "$memory" -ge 64 ] || die "define: --memory MiB is required (at least 64)"
    case "$ram" in memfd|file|anonymous) ;; *) die "define: --ram must be memfd, file or anonymous" ;; esac
    case "$workload" in idle|dataset) ;; *) die "define: --workload must be idle or dataset" ;; esac
    [[ "$fill" =~ ^[0-9]+$ ]] || die "define: --fill takes a number of MiB"
    [ -z "$fillseed" ] || [[ "$fillseed" =~ ^[A-Za-z0-9_.-]+$ ]] || die "define: --fill-seed must be [A-Za-z0-9_.-]+"
    if [ "$fill" -gt 0 ] && [ $((fill * 2 + 8)) -gt $((memory * 3 / 4)) ]; then
        die "define: --fill $fill needs 2 x $fill MiB of guest tmpfs (75% of $memory MiB); use less fill or more memory"
    fi

    require_root
    require_libvirt
    if [ ! -s "$STATE/vmlinuz" ] || [ ! -s "$STATE/guest-initrd.img" ]; then
        "$TESTHOST_SCRIPTS/build-image.sh"
    fi
    if domain_exists "$name" && ! domain_recorded "$name"; then
        die "a domain named '$name' already exists and was not created by these scripts"
    fi

    local membacking=""
    case "$ram" in
    memfd) membacking="  <memoryBacking>
    <source type='memfd'/>
    <access mode='shared'/>
  </memoryBacking>" ;;
    file) membacking="  <memoryBacking>
    <source type='file'/>
    <access mode='shared'/>
  </memoryBacking>" ;;
    esac
    local cmdline="console=ttyS0 quiet loglevel=1 panic=-1 samepage.workload=$workload samepage.fill=$fill"
    [ -z "$fillseed" ] || cmdline="$cmdline samepage.fillseed=$fillseed"
    [ -z "${SAMEPAGE_GUEST_CMDLINE_EXTRA:-}" ] || cmdline="$cmdline $SAMEPAGE_GUEST_CMDLINE_EXTRA"
    local emulator; emulator="$(command -v qemu-system-x86_64)" || die "qemu-system-x86_64 not installed (run setup.sh)"
    local log; log="$(serial_log "$name")"
    local xml="$STATE/xml/$name.xml"

    cat >"$xml.tmp" <<EOF
<domain type='qemu'>
  <name>$name</name>
  <description>Samepage test guest (scripts/testhost/guest.sh): ram=$ram workload=$workload fill=$fill</description>
  <memory unit='MiB'>$memory</memory>
  <currentMemory unit='MiB'>$memory</currentMemory>
$membacking
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$STATE/vmlinuz</kernel>
    <initrd>$STATE/guest-initrd.img</initrd>
    <cmdline>$cmdline</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>$emulator</emulator>
    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path='$log'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path='$log'/>
      <target type='serial' port='0'/>
    </console>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
    mv -f "$xml.tmp" "$xml"

    record_domain "$name"            # record first: a crash after define must not orphan it
    local out
    out="$(virsh -c "$LIBVIRT_URI" define "$xml" 2>&1)" || {
        domain_exists "$name" || unrecord_domain "$name"
        die "virsh define failed: $out"
    }
    log "defined $name (ram=$ram, memory=${memory} MiB, workload=$workload, fill=$fill) from $xml"
    if domain_running "$name"; then
        log "note: $name is running; the new definition applies at its next start"
    fi
    [ "$start" -eq 0 ] || cmd_start "$name"
}

cmd_start() {
    local name="${1:-}"; need_name "$name"; require_root; require_libvirt; need_ours "$name"
    if domain_running "$name"; then
        log "$name is already running"
        return 0
    fi
    local log; log="$(serial_log "$name")"
    rm -f "$log"
    local out
    out="$(virsh -c "$LIBVIRT_URI" start "$name" 2>&1)" ||
        die "virsh start $name failed: $out
  (QEMU log: /var/log/libvirt/qemu/$name.log)"
    log "started $name (serial: $log)"
}

cmd_destroy() {
    local name="${1:-}"; need_name "$name"; require_root; require_libvirt; need_ours "$name"
    if domain_running "$name"; then
        local out
        out="$(virsh -c "$LIBVIRT_URI" destroy "$name" 2>&1)" || die "virsh destroy $name failed: $out"
        log "destroyed $name"
    else
        log "$name is not running"
    fi
}

cmd_undefine() {
    local name="${1:-}"; need_name "$name"; require_root; require_libvirt
    if ! domain_recorded "$name"; then
        domain_exists "$name" && die "domain '$name' was not defined by guest.sh; leaving it alone"
        log "$name is not defined"
        return 0
    fi
    if domain_exists "$name"; then
        cmd_destroy "$name"
        local out
        out="$(virsh -c "$LIBVIRT_URI" undefine "$name" 2>&1)" || die "virsh undefine $name failed: $out"
        log "undefined $name"
    else
        log "$name no longer exists in libvirt"
    fi
    unrecord_domain "$name"
    rm -f "$STATE/xml/$name.xml"
}

cmd_serial() { local name="${1:-}"; need_name "$name"; serial_log "$name"; }

# qemu_alive NAME: the QEMU of NAME runs (pid file libvirt keeps while it runs + /proc).
qemu_alive() {
    local f="/run/libvirt/qemu/$1.pid" pid
    [ -s "$f" ] || return 1
    pid="$(tr -dc '0-9' <"$f")"
    [ -n "$pid" ] && [ -d "/proc/$pid" ] && [[ "$(proc_comm "$pid")" == qemu* ]]
}

# wait_for NAME ERE TIMEOUT
wait_for() {
    local name="$1" pattern="$2" timeout="$3" log t0 now
    [[ "$timeout" =~ ^[0-9]+$ ]] || die "timeout must be whole seconds"
    log="$(serial_log "$name")"
    t0="$(date +%s.%N)"
    local deadline=$((SECONDS + timeout)) n=0
    while :; do
        if [ -f "$log" ] && grep -qE -- "$pattern" "$log"; then
            now="$(date +%s.%N)"
            log "$name: '$(grep -E -m1 -- "$pattern" "$log" | tr -d '\r')' after $(awk -v a="$t0" -v b="$now" 'BEGIN { printf "%.1f", b - a }') s of waiting"
            return 0
        fi
        # Every ~2 s check that the guest still runs (a panic ends it: on_reboot=destroy).
        if [ $((n % 10)) -eq 0 ] && ! qemu_alive "$name"; then
            die "$name is not running; serial log ($log) ends with:
$(tail -n 20 "$log" 2>/dev/null)"
        fi
        [ "$SECONDS" -lt "$deadline" ] || die "$name: no line matching '$pattern' within ${timeout} s; serial log ($log) ends with:
$(tail -n 20 "$log" 2>/dev/null)"
        n=$((n + 1))
        sleep 0.2
    done
}

cmd_wait_ready() {
    local name="${1:-}"; need_name "$name"
    wait_for "$name" 'SAMEPAGE-GUEST-READY' "${2:-60}"
}

cmd_wait_for() {
    local name="${1:-}"; need_name "$name"
    [ -n "${2:-}" ] || die "wait-for NAME PATTERN [TIMEOUT_S]"
    wait_for "$name" "$2" "${3:-60}"
}

cmd_pid() {
    local name="${1:-}"; need_name "$name"
    local f="/run/libvirt/qemu/$name.pid"
    [ -s "$f" ] || die "$name is not running (no $f)"
    tr -dc '0-9' <"$f"; echo
}

cmd_list() {
    local n
    for n in $(recorded_domains); do
        printf '%-24s %s\n' "$n" "$(domain_state "$n" || true)"
    done
}

sub="${1:-}"; [ $# -gt 0 ] && shift
case "$sub" in
define) cmd_define "$@" ;;
start) cmd_start "$@" ;;
destroy) cmd_destroy "$@" ;;
undefine) cmd_undefine "$@" ;;
serial) cmd_serial "$@" ;;
wait-ready) cmd_wait_ready "$@" ;;
wait-for) cmd_wait_for "$@" ;;
pid) cmd_pid "$@" ;;
list) cmd_list ;;
-h|--help|help) usage ;;
"") usage >&2; exit 2 ;;
*) die "unknown command '$sub' (see guest.sh --help)" ;;
esac
