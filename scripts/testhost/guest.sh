#!/usr/bin/env bash
# Usage:
#   guest.sh define NAME --memory MiB [--ram memfd|file|anonymous | --hugepages]
#                        [--workload idle|dataset] [--fill MB] [--fill-seed STRING]
#                        [--virtiofs DIR] [--virtiofs-socket PATH] [--virtiofs-tag TAG] [--start]
#   guest.sh start NAME              start (no-op if running); clears the serial log first
#   guest.sh destroy NAME            hard-stop (no-op if not running)
#   guest.sh undefine NAME           destroy if running, undefine, forget the name
#   guest.sh serial NAME             print the serial log path ($STATE/serial/NAME.log)
#   guest.sh wait-ready NAME [TIMEOUT_S]          wait for SAMEPAGE-GUEST-READY (default 60 s)
#   guest.sh wait-for NAME PATTERN [TIMEOUT_S]    wait for a line matching grep -E PATTERN
#   guest.sh pid NAME                print the QEMU pid (/run/libvirt/qemu/NAME.pid)
#   guest.sh virtiofsd-pid NAME      print the pid of the external virtiofsd guest.sh started
#                                    for NAME (the parent; its sandbox child maps guest RAM)
#   guest.sh list                    recorded guests and their state
#
# Test guests for Samepage: <domain type='qemu'> (TCG; nested KVM hangs here), 1 vCPU, direct
# kernel boot of $STATE/vmlinuz + $STATE/guest-initrd.img (see guest-init.sh for workloads),
# serial console to $STATE/serial/NAME.log, no disks, no network, <memballoon model='none'/>.
# RAM: memfd (default) = <memoryBacking><source type='memfd'/><access mode='shared'/>;
#      file = <source type='file'/> + shared access, a file under qemu.conf memory_backing_dir;
#      anonymous = no <memoryBacking>.
# --hugepages (instead of --ram): <memoryBacking><hugepages/><access mode='shared'/>, RAM in a
#      file on hugetlbfs (/dev/hugepages/libvirt/qemu/ID-NAME/..., mapped rw-s) of 2 MiB pages
#      from the pool setup.sh reserves (SAMEPAGE_HUGEPAGES, default 256 = 512 MiB); MiB must be
#      even. "start" refuses when the pool has fewer free pages than the guest needs (QEMU
#      would fail, or die later on a page fault). 192 MiB boots under TCG.
# virtiofs (a vhost-user backend; needs --ram memfd or file, i.e. shared guest RAM): the guest
# gets a vhost-user-fs-pci device with tag TAG (default samepagefs) and its kernel command line
# samepage.virtiofs=TAG, so guest-init.sh mounts it on /mnt and prints SAMEPAGE-VIRTIOFS-OK
# (wait for it with wait-for NAME SAMEPAGE-VIRTIOFS-OK). Three ways to run the backend (all
# three work with libvirt 9.0 and QEMU 7.2 on Debian 12):
#   --virtiofs DIR                        libvirt starts virtiofsd itself
#       (<filesystem type='mount' accessmode='passthrough'><driver type='virtiofs'/>
#        <binary path='/usr/lib/qemu/virtiofsd'/><source dir='DIR'/>...); libvirt makes the
#       socket (/var/lib/libvirt/qemu/domain-ID-NAME/fs0-fs.sock, not shown in the domain XML,
#       only on QEMU's command line), passes it to virtiofsd as --fd=N, and stops virtiofsd
#       with the guest.
#   --virtiofs DIR --virtiofs-socket PATH  external virtiofsd: "guest.sh start" runs
#       virtiofsd --socket-path=PATH -o source=DIR (log: $STATE/logs/virtiofsd-NAME.log)
#       and waits until it listens on PATH, then starts the guest
#       (<filesystem type='mount'><driver type='virtiofs' queue='1024'/><source socket='PATH'/>
#        ...). QEMU connects to it as a client. That virtiofsd exits when the guest stops;
#       destroy/undefine also stop it. Each "start" starts a fresh one.
#   --virtiofs-socket PATH                 the same XML, but the caller starts the vhost-user
#       backend on PATH before "guest.sh start" (start fails unless something listens there).
#   DIR and PATH must be absolute paths of [A-Za-z0-9_./-]; SAMEPAGE_VIRTIOFSD overrides
#   the virtiofsd binary (default /usr/lib/qemu/virtiofsd, QEMU 7.2's C virtiofsd). That
#   virtiofsd forks once it has a connection: the child (own pid/mount/net namespaces) maps the
#   guest RAM; the parent, whose pid libvirt's pid file and virtiofsd-pid print, does not.
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
    local memory="" ram="" hugepages=0 workload=idle fill=0 fillseed="" start=0
    local vfs_dir="" vfs_socket="" vfs_tag=samepagefs
    while [ $# -gt 0 ]; do
        case "$1" in
        --memory) memory="${2:-}"; shift 2 || die "--memory needs a value" ;;
        --ram) ram="${2:-}"; shift 2 || die "--ram needs a value" ;;
        --hugepages) hugepages=1; shift ;;
        --workload) workload="${2:-}"; shift 2 || die "--workload needs a value" ;;
        --fill) fill="${2:-}"; shift 2 || die "--fill needs a value" ;;
        --fill-seed) fillseed="${2:-}"; shift 2 || die "--fill-seed needs a value" ;;
        --virtiofs) vfs_dir="${2:-}"; shift 2 || die "--virtiofs needs a directory" ;;
        --virtiofs-socket) vfs_socket="${2:-}"; shift 2 || die "--virtiofs-socket needs a path" ;;
        --virtiofs-tag) vfs_tag="${2:-}"; shift 2 || die "--virtiofs-tag needs a value" ;;
        --start) start=1; shift ;;
        *) die "define: unknown option '$1'" ;;
        esac
    done
    [[ "$memory" =~ ^[0-9]+$ ]] && [ "$memory" -ge 64 ] || die "define: --memory MiB is required (at least 64)"
    if [ "$hugepages" -eq 1 ]; then
        [ -z "$ram" ] || die "define: --hugepages is a kind of RAM of its own; leave out --ram"
        ram=hugepages
        [ $((memory % 2)) -eq 0 ] || die "define: --hugepages needs --memory in whole 2 MiB pages (an even MiB count)"
    fi
    [ -n "$ram" ] || ram=memfd
    case "$ram" in memfd|file|anonymous|hugepages) ;; *) die "define: --ram must be memfd, file or anonymous" ;; esac
    case "$workload" in idle|dataset) ;; *) die "define: --workload must be idle or dataset" ;; esac
    [[ "$fill" =~ ^[0-9]+$ ]] || die "define: --fill takes a number of MiB"
    [ -z "$fillseed" ] || [[ "$fillseed" =~ ^[A-Za-z0-9_.-]+$ ]] || die "define: --fill-seed must be [A-Za-z0-9_.-]+"
    # The guest's tmpfs is 75% of the memory its kernel sees, a few percent below $memory
    # (4096 MiB gives 2946 MiB of tmpfs): 4% is kept for that.
    if [ "$fill" -gt 0 ] && [ $((fill * 2 + 8)) -gt $((memory * 3 / 4 - memory / 25)) ]; then
        die "define: --fill $fill needs 2 x $fill MiB of guest tmpfs (75% of the $memory MiB its kernel sees); use less fill or more memory"
    fi
    local virtiofs=0
    if [ -n "$vfs_dir" ] || [ -n "$vfs_socket" ]; then
        virtiofs=1
        [ "$ram" != anonymous ] || die "define: virtiofs needs shared guest RAM (--ram memfd or file, or --hugepages)"
        [[ "$vfs_tag" =~ ^[A-Za-z0-9_.-]{1,36}$ ]] || die "define: --virtiofs-tag must be 1-36 of [A-Za-z0-9_.-]"
    fi
    if [ -n "$vfs_dir" ]; then
        [[ "$vfs_dir" =~ ^/[A-Za-z0-9_./-]*$ ]] || die "define: --virtiofs DIR must be an absolute path of [A-Za-z0-9_./-]"
        [ -d "$vfs_dir" ] || die "define: --virtiofs $vfs_dir is not a directory"
        [ -x "$VIRTIOFSD" ] || die "define: $VIRTIOFSD not found (install qemu-system-common)"
    fi
    if [ -n "$vfs_socket" ]; then
        [[ "$vfs_socket" =~ ^/[A-Za-z0-9_./-]*[A-Za-z0-9_.-]$ ]] || die "define: --virtiofs-socket PATH must be an absolute path of [A-Za-z0-9_./-]"
        [ ${#vfs_socket} -le 107 ] || die "define: --virtiofs-socket PATH is longer than a unix socket path may be (107)"
        [ -d "$(dirname "$vfs_socket")" ] || die "define: the directory of --virtiofs-socket $vfs_socket does not exist"
    fi

    require_root
    require_libvirt
    if [ "$ram" = hugepages ]; then
        hugetlbfs_mounted || die "define: hugetlbfs is not mounted at $HUGETLBFS_MOUNT; run setup.sh"
        libvirtd_saw_hugetlbfs ||
            die "define: libvirtd started before hugetlbfs was mounted and refuses hugepage guests; run setup.sh"
    fi
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
    hugepages) membacking="  <memoryBacking>
    <hugepages/>
    <access mode='shared'/>
  </memoryBacking>" ;;
    esac
    local cmdline="console=ttyS0 quiet loglevel=1 panic=-1 samepage.workload=$workload samepage.fill=$fill"
    [ -z "$fillseed" ] || cmdline="$cmdline samepage.fillseed=$fillseed"
    [ "$virtiofs" -eq 0 ] || cmdline="$cmdline samepage.virtiofs=$vfs_tag"
    [ -z "${SAMEPAGE_GUEST_CMDLINE_EXTRA:-}" ] || cmdline="$cmdline $SAMEPAGE_GUEST_CMDLINE_EXTRA"
    local filesystem="" vfs_desc=""
    if [ -n "$vfs_socket" ]; then
        filesystem="    <filesystem type='mount'>
      <driver type='virtiofs' queue='1024'/>
      <source socket='$vfs_socket'/>
      <target dir='$vfs_tag'/>
    </filesystem>"
        vfs_desc=" virtiofs=external:$vfs_socket"
    elif [ -n "$vfs_dir" ]; then
        filesystem="    <filesystem type='mount' accessmode='passthrough'>
      <driver type='virtiofs'/>
      <binary path='$VIRTIOFSD'/>
      <source dir='$vfs_dir'/>
      <target dir='$vfs_tag'/>
    </filesystem>"
        vfs_desc=" virtiofs=libvirt:$vfs_dir"
    fi
    local emulator; emulator="$(command -v qemu-system-x86_64)" || die "qemu-system-x86_64 not installed (run setup.sh)"
    local log; log="$(serial_log "$name")"
    local xml="$STATE/xml/$name.xml"

    cat >"$xml.tmp" <<EOF
<domain type='qemu'>
  <name>$name</name>
  <description>Samepage test guest (scripts/testhost/guest.sh): ram=$ram workload=$workload fill=$fill$vfs_desc</description>
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
$filesystem
    <memballoon model='none'/>
  </devices>
</domain>
EOF
    mv -f "$xml.tmp" "$xml"
    # What "start" needs to run an external virtiofsd (none: no file).
    if [ -n "$vfs_socket" ]; then
        printf 'socket=%s\nsource=%s\n' "$vfs_socket" "$vfs_dir" >"$STATE/virtiofs/$name.conf"
    else
        rm -f "$STATE/virtiofs/$name.conf"
    fi

    record_domain "$name"            # record first: a crash after define must not orphan it
    local out
    out="$(virsh -c "$LIBVIRT_URI" define "$xml" 2>&1)" || {
        domain_exists "$name" || unrecord_domain "$name"
        die "virsh define failed: $out"
    }
    log "defined $name (ram=$ram, memory=${memory} MiB, workload=$workload, fill=$fill$vfs_desc) from $xml"
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
    check_hugepages "$name"
    rm -f "$log"
    start_virtiofsd "$name"
    local out
    out="$(virsh -c "$LIBVIRT_URI" start "$name" 2>&1)" || {
        stop_our_virtiofsd "$name"
        die "virsh start $name failed: $out
  (QEMU log: /var/log/libvirt/qemu/$name.log)"
    }
    log "started $name (serial: $log)"
}

# check_hugepages NAME: for a guest defined with --hugepages, enough free 2 MiB pages.
check_hugepages() {
    local xml="$STATE/xml/$1.xml" mib need avail
    [ -r "$xml" ] && grep -q '<hugepages/>' "$xml" || return 0
    hugetlbfs_mounted || die "$1 has hugepage RAM, but hugetlbfs is not mounted at $HUGETLBFS_MOUNT; run setup.sh"
    mib="$(sed -n "/<memory unit='MiB'>/{s:.*<memory unit='MiB'>\([0-9]*\)</memory>.*:\1:p;q}" "$xml")"
    need=$(( ${mib:-0} / 2 ))
    avail="$(hugepages_available)"
    [ "$avail" -ge "$need" ] ||
        die "$1 needs $need free 2 MiB huge pages, the pool has $avail (nr_hugepages $(cat "$HUGEPAGES_2M/nr_hugepages")); stop other hugepage guests or raise SAMEPAGE_HUGEPAGES and run setup.sh"
}

# vfs_conf NAME KEY: a value from $STATE/virtiofs/NAME.conf (empty if none).
vfs_conf() {
    [ -r "$STATE/virtiofs/$1.conf" ] || return 0
    sed -n "s/^$2=//p" "$STATE/virtiofs/$1.conf" | head -n1
}

# start_virtiofsd NAME: for a guest defined with --virtiofs-socket, make sure a vhost-user
# backend listens on the socket; starts virtiofsd there when the guest was also given a DIR.
start_virtiofsd() {
    local name="$1" socket source pid
    socket="$(vfs_conf "$name" socket)"
    [ -n "$socket" ] || return 0
    source="$(vfs_conf "$name" source)"
    pid="$(our_virtiofsd_pid "$name")"
    if [ -n "$pid" ] && unix_listening "$socket"; then
        log "virtiofsd of $name already listening on $socket (pid $pid)"
        return 0
    fi
    [ -z "$pid" ] || stop_our_virtiofsd "$name"     # ours, but not (or no longer) listening
    if [ -z "$source" ]; then
        unix_listening "$socket" ||
            die "$name uses the external vhost-user socket $socket, but nothing listens there; start its backend first"
        return 0
    fi
    ! unix_listening "$socket" ||
        die "something else already listens on $socket (not the virtiofsd guest.sh starts for $name)"
    [ -d "$source" ] || die "virtiofs source $source of $name is not a directory"
    [ -x "$VIRTIOFSD" ] || die "$VIRTIOFSD not found (install qemu-system-common)"
    rm -f "$socket"                                  # stale socket file of an earlier run
    local vlog="$STATE/logs/virtiofsd-$name.log"
    (
        cd /
        close_inherited_fds
        exec setsid "$VIRTIOFSD" --socket-path="$socket" -o source="$source" </dev/null >>"$vlog" 2>&1
    ) &
    pid=$!
    local start=""
    for _ in $(seq 1 50); do
        start="$(proc_starttime "$pid")" && [ "$(proc_comm "$pid")" = virtiofsd ] && break
        start=""
        sleep 0.02
    done
    [ -n "$start" ] || die "virtiofsd for $name did not start; see $vlog"
    printf '%s %s\n' "$pid" "$start" >"$STATE/virtiofs/$name.pid"
    for _ in $(seq 1 100); do
        unix_listening "$socket" && break
        [ -d "/proc/$pid" ] || die "virtiofsd for $name exited; see $vlog"
        sleep 0.1
    done
    unix_listening "$socket" || { stop_our_virtiofsd "$name"; die "virtiofsd for $name does not listen on $socket after 10 s; see $vlog"; }
    log "started virtiofsd pid $pid for $name on $socket (source $source, log $vlog)"
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
    stop_our_virtiofsd "$name"
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
    stop_our_virtiofsd "$name"
    unrecord_domain "$name"
    rm -f "$STATE/xml/$name.xml" "$STATE/virtiofs/$name.conf"
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

cmd_virtiofsd_pid() {
    local name="${1:-}"; need_name "$name"
    local pid; pid="$(our_virtiofsd_pid "$name")"
    [ -n "$pid" ] || die "no virtiofsd started by guest.sh for $name is running"
    printf '%s\n' "$pid"
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
virtiofsd-pid) cmd_virtiofsd_pid "$@" ;;
list) cmd_list ;;
-h|--help|help) usage ;;
"") usage >&2; exit 2 ;;
*) die "unknown command '$sub' (see guest.sh --help)" ;;
esac
