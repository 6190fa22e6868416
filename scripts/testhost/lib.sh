# shellcheck shell=bash
# Common helpers for the Samepage test-host scripts. Sourced, never executed.
#
# State directory (SAMEPAGE_TESTHOST_DIR, default /var/lib/samepage-testhost):
#   domains            names of libvirt domains these scripts defined (one per line)
#   created            other things these scripts created (users, groups, qemu.conf)
#   libvirtd.pid       "PID STARTTIME" of the libvirtd that setup.sh started
#   virtlogd.pid       "PID STARTTIME" of the virtlogd that setup.sh started
#   qemu.conf.orig     /etc/libvirt/qemu.conf as it was before setup.sh first changed it
#   vmlinuz, guest-initrd.img, image.stamp, dataset.md5   the guest image (build-image.sh)
#   membacking/        qemu.conf memory_backing_dir (file-backed guest RAM); setup.sh takes
#                      SAMEPAGE_MEMBACKING_DIR instead if set (e.g. a tmpfs such as /dev/shm/x)
#   serial/NAME.log    serial console of guest NAME
#   xml/NAME.xml       the domain XML guest.sh defined
#   virtiofs/NAME.conf the external virtiofsd guest.sh starts for NAME (--virtiofs-socket)
#   virtiofs/NAME.pid  "PID STARTTIME" of that virtiofsd while guest.sh's copy may still run
#   logs/virtiofsd-NAME.log  its output
#   logs/              libvirtd / virtlogd logs
#   lock               flock(1) lock serialising updates of the records above

# shellcheck disable=SC2034  # used by the scripts that source this file
STATE="${SAMEPAGE_TESTHOST_DIR:-/var/lib/samepage-testhost}"
TESTHOST_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LIBVIRT_URI="qemu:///system"
QEMU_CONF="${SAMEPAGE_QEMU_CONF:-/etc/libvirt/qemu.conf}"
MEMBACKING="${SAMEPAGE_MEMBACKING_DIR:-$STATE/membacking}"
LIBVIRTD_PIDFILE=/run/libvirtd.pid
VIRTLOGD_PIDFILE=/run/virtlogd.pid

PROG="$(basename "$0")"

log()  { printf '%s: %s\n' "$PROG" "$*" >&2; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die()  { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

require_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (libvirtd, qemu.conf and guest RAM need it)"
}

virsh_() { virsh -q -c "$LIBVIRT_URI" "$@"; }

ensure_state_dir() {
    mkdir -p "$STATE" "$STATE/serial" "$STATE/xml" "$STATE/logs" "$STATE/virtiofs" "$MEMBACKING"
    touch "$STATE/domains" "$STATE/created"
}

# Run "$@" while holding the state lock (serialises record updates).
with_lock() {
    ensure_state_dir
    (
        flock -w 60 9 || die "could not lock $STATE/lock within 60 s"
        "$@"
    ) 9>"$STATE/lock"
}

# --- record of created domains ----------------------------------------------

domain_recorded() { [ -f "$STATE/domains" ] && grep -qxF -- "$1" "$STATE/domains"; }

_record_domain()   { domain_recorded "$1" || printf '%s\n' "$1" >>"$STATE/domains"; }
_unrecord_domain() {
    [ -f "$STATE/domains" ] || return 0
    grep -vxF -- "$1" "$STATE/domains" >"$STATE/domains.tmp" || true
    mv -f "$STATE/domains.tmp" "$STATE/domains"
}
record_domain()   { with_lock _record_domain "$1"; }
unrecord_domain() { with_lock _unrecord_domain "$1"; }

recorded_domains() { [ -f "$STATE/domains" ] && grep -v '^[[:space:]]*$' "$STATE/domains" || true; }

record_created() {
    ensure_state_dir
    grep -qxF -- "$1" "$STATE/created" || printf '%s\n' "$1" >>"$STATE/created"
}

# --- processes ----------------------------------------------------------------

# Start time (clock ticks since boot) of PID, field 22 of /proc/PID/stat.
proc_starttime() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"            # drop "pid (comm) " (comm may contain spaces)
    # shellcheck disable=SC2086
    set -- $stat                   # now $1 is field 3 (state)
    printf '%s\n' "${20}"          # field 22
}

proc_comm() { cat "/proc/$1/comm" 2>/dev/null; }

# close_inherited_fds: close every descriptor above 2 of the calling (sub)shell, just before it
# execs a daemon. libvirtd, virtlogd and virtiofsd keep what they inherit for their whole life:
# a script run under "flock LOCKFILE setup.sh" would otherwise leave the lock held by the
# libvirtd it started, and nobody else could take it until that libvirtd exits.
close_inherited_fds() {
    local fd
    for fd in /proc/"$BASHPID"/fd/*; do
        fd="${fd##*/}"
        if [ "$fd" -gt 2 ] && [ "$fd" -ne 255 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
}

# pid_alive_as PID NAME: PID is a live process whose comm is NAME.
pid_alive_as() {
    [ -n "$1" ] && [ -d "/proc/$1" ] && [ "$(proc_comm "$1")" = "$2" ]
}

# Pid of a running daemon NAME (libvirtd/virtlogd), from its pidfile or, failing
# that, by exact process name (only used to *detect*, never to kill). Empty if none.
running_daemon_pid() {
    local name="$1" pidfile="$2" pid=""
    if [ -r "$pidfile" ]; then
        pid="$(tr -dc '0-9' <"$pidfile")"
        if pid_alive_as "$pid" "$name"; then printf '%s\n' "$pid"; return 0; fi
    fi
    pid="$(pgrep -x "$name" | head -n1 || true)"
    [ -n "$pid" ] && printf '%s\n' "$pid"
    return 0
}

# Pid recorded in $STATE/NAME.pid if that exact process (pid + start time) still runs.
our_daemon_pid() {
    local name="$1" rec="$STATE/$1.pid" pid start
    [ -r "$rec" ] || return 0
    read -r pid start <"$rec" || true
    if pid_alive_as "$pid" "$name" && [ "$(proc_starttime "$pid")" = "$start" ]; then
        printf '%s\n' "$pid"
    fi
    return 0
}

libvirtd_pid() { running_daemon_pid libvirtd "$LIBVIRTD_PIDFILE"; }
virtlogd_pid() { running_daemon_pid virtlogd "$VIRTLOGD_PIDFILE"; }

libvirt_reachable() { virsh -c "$LIBVIRT_URI" version >/dev/null 2>&1; }

require_libvirt() {
    libvirt_reachable || die "libvirt ($LIBVIRT_URI) is not reachable; run $TESTHOST_SCRIPTS/setup.sh first"
}

# Names of all domains libvirt knows (running or defined).
libvirt_domains() { virsh_ list --all --name | grep -v '^[[:space:]]*$' || true; }

domain_exists() { virsh -c "$LIBVIRT_URI" dominfo -- "$1" >/dev/null 2>&1; }

domain_state() { virsh -c "$LIBVIRT_URI" domstate -- "$1" 2>/dev/null | head -n1; }

# Active = has a QEMU process (running, paused, ...).
# (Not `virsh list | grep -q`: under pipefail, grep exiting at its match can fail the pipeline
# with virsh's SIGPIPE, and a running guest would be taken for stopped.)
domain_running() { local names; names="$(virsh_ list --name)" || return 1; grep -qxF -- "$1" <<<"$names"; }

# --- huge pages (setup.sh reserves them and mounts hugetlbfs; guest.sh --hugepages) --------

HUGETLBFS_MOUNT=/dev/hugepages
HUGEPAGES_2M=/sys/kernel/mm/hugepages/hugepages-2048kB

# hugetlbfs is mounted at $HUGETLBFS_MOUNT.
hugetlbfs_mounted() {
    awk -v m="$HUGETLBFS_MOUNT" '$2 == m && $3 == "hugetlbfs" { found = 1 } END { exit !found }' /proc/mounts
}

# The running libvirtd found that hugetlbfs when it started: its QEMU driver creates
# MOUNT/libvirt/qemu at start-up for every hugetlbfs it finds, and the directory goes with the
# mount, so it exists only if a libvirtd started after this mount was made.
libvirtd_saw_hugetlbfs() { hugetlbfs_mounted && [ -d "$HUGETLBFS_MOUNT/libvirt/qemu" ]; }

# 2 MiB huge pages neither in use nor promised to a mapping (free minus reserved).
hugepages_available() {
    local free resv
    free="$(cat "$HUGEPAGES_2M/free_hugepages" 2>/dev/null || echo 0)"
    resv="$(cat "$HUGEPAGES_2M/resv_hugepages" 2>/dev/null || echo 0)"
    echo $((free - resv))
}

# --- external virtiofsd (guest.sh define --virtiofs DIR --virtiofs-socket PATH) ----

VIRTIOFSD="${SAMEPAGE_VIRTIOFSD:-/usr/lib/qemu/virtiofsd}"

# unix_listening PATH: some process listens on the unix socket PATH (/proc/net/unix: flags
# __SO_ACCEPTCON = 00010000, state SS_UNCONNECTED = 01).
unix_listening() {
    awk -v p="$1" '$8 == p && $4 == "00010000" && $6 == "01" { found = 1 } END { exit !found }' /proc/net/unix
}

# Pid of the virtiofsd guest.sh started for NAME, if that process (pid + start time) still runs.
our_virtiofsd_pid() {
    local rec="$STATE/virtiofs/$1.pid" pid start
    [ -r "$rec" ] || return 0
    read -r pid start <"$rec" || true
    if pid_alive_as "$pid" virtiofsd && [ "$(proc_starttime "$pid")" = "$start" ]; then
        printf '%s\n' "$pid"
    fi
    return 0
}

# stop_our_virtiofsd NAME: stop the virtiofsd guest.sh started for NAME (if it still runs).
# (Its sandbox child has PR_SET_PDEATHSIG and goes with it.)
stop_our_virtiofsd() {
    local pid
    pid="$(our_virtiofsd_pid "$1")"
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
        if [ -d "/proc/$pid" ]; then
            kill -KILL "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
        fi
        log "stopped virtiofsd pid $pid of $1"
    fi
    rm -f "$STATE/virtiofs/$1.pid"
}

valid_name() { [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$ ]]; }
