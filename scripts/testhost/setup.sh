#!/usr/bin/env bash
# Usage: setup.sh
#
# Prepares this machine (Debian 12, root, no systemd) to run Samepage test guests:
#   1. installs the packages (apt-get; skipped when all are already installed), none of them
#      allowed to start a service meanwhile (a policy-rc.d that forbids it, unless the
#      machine has one), and disables the prometheus server that comes with promtool,
#   2. creates the libvirt-qemu user/group libvirtd insists on (if missing),
#   3. writes the settings below into /etc/libvirt/qemu.conf (inside a marked block),
#        user = "root"  group = "root"  dynamic_ownership = 0  security_driver = "none"
#        memory_backing_dir = "$STATE/membacking"      (file-backed guest RAM; set
#                                       SAMEPAGE_MEMBACKING_DIR to use another directory)
#      and REFUSES to do anything if libvirt already has domains these scripts did not
#      create (not listed in $STATE/domains),
#   4. reserves 2 MiB huge pages (at least SAMEPAGE_HUGEPAGES, default 256 = 512 MiB: only
#      ever raises nr_hugepages, never lowers what the host has) and mounts hugetlbfs at
#      /dev/hugepages if nothing is mounted there, for guests with <hugepages/> RAM
#      (guest.sh define --hugepages). libvirtd only offers hugepages if hugetlbfs was mounted
#      when it started (it then creates /dev/hugepages/libvirt/qemu, which is how setup.sh
#      tells), so this comes before the daemons, and a running libvirtd that has not seen the
#      mount is restarted as for a qemu.conf change (below).
#   5. starts virtlogd and libvirtd (-d) unless already running, records their pids in
#      $STATE/virtlogd.pid / $STATE/libvirtd.pid, and waits for
#      "virsh -c qemu:///system version" (30 s). If qemu.conf changed while a libvirtd runs,
#      it restarts that libvirtd only if setup.sh started it; otherwise it tells you and fails.
#   6. builds the guest image (build-image.sh) if missing or out of date.
# State: SAMEPAGE_TESTHOST_DIR (default /var/lib/samepage-testhost). Idempotent.
# Undo with teardown.sh (packages and qemu.conf stay; $STATE/qemu.conf.orig is the original).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

case "${1:-}" in
"") ;;
-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
*) die "unknown argument '$1' (usage: setup.sh)" ;;
esac

require_root

# prometheus is there for its promtool only (Tests/PackagingTests checks the packaged rules
# and the dashboard's queries); chromium, headless, loads samepaged's status page in
# Tests/SamepageMetricsTests; lintian checks the Debian package (packaging/test-package.sh).
PACKAGES=(libvirt-dev libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
          qemu-system-x86 qemu-utils busybox-static cpio libxxhash-dev libssl-dev libcrypt-dev
          linux-image-cloud-amd64 python3 python3-prometheus-client dpkg-dev binutils prometheus
          chromium lintian)

# ---- 1. packages ---------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != "installed" ]; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing packages (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    # No package starts a service while it installs: this script starts the daemons it needs
    # itself (below), and the prometheus server must not run at all. invoke-rc.d and
    # deb-systemd-invoke ask /usr/sbin/policy-rc.d first, and its exit status 101 forbids the
    # start. One that is already there (a container's) is left as it is.
    POLICY_RC=/usr/sbin/policy-rc.d
    if [ ! -e "$POLICY_RC" ]; then
        printf '#!/bin/sh\n# Written by samepage setup.sh while it installs packages.\nexit 101\n' >"$POLICY_RC"
        chmod 0755 "$POLICY_RC"
        trap 'rm -f "$POLICY_RC"' EXIT
        apt-get install -y --no-install-recommends "${PACKAGES[@]}"
        rm -f "$POLICY_RC"
        trap - EXIT
    else
        apt-get install -y --no-install-recommends "${PACKAGES[@]}"
    fi
    # Nor later: the package enables its server at boot. If prometheus came with this install
    # (one installed before is the host's business), disable it, and stop it in case the
    # machine's own policy-rc.d let it start.
    if [[ " ${missing[*]} " == *" prometheus "* ]]; then
        if [ -d /run/systemd/system ]; then
            systemctl disable --now prometheus.service >/dev/null 2>&1 || warn "could not disable prometheus.service"
        else
            update-rc.d prometheus disable >/dev/null 2>&1 || warn "could not disable /etc/init.d/prometheus"
            /etc/init.d/prometheus stop >/dev/null 2>&1 || true
        fi
        log "prometheus installed for promtool; its server is stopped and disabled at boot"
    fi
else
    log "packages already installed"
fi
for cmd in libvirtd virtlogd virsh qemu-system-x86_64 busybox cpio flock pgrep promtool; do
    command -v "$cmd" >/dev/null || die "'$cmd' not found after installing packages"
done

ensure_state_dir

# ---- 2. foreign domains: refuse before touching anything of libvirt's ----------
foreign=()
running_pid="$(libvirtd_pid)"
if [ -n "$running_pid" ]; then
    names="$(virsh -c "$LIBVIRT_URI" list --all --name 2>&1)" ||
        die "libvirtd (pid $running_pid) is running but 'virsh -c $LIBVIRT_URI list' failed: $names"
    while IFS= read -r n; do
        if [ -n "$n" ] && ! domain_recorded "$n"; then foreign+=("$n"); fi
    done <<<"$names"
else
    # libvirtd is down: it would load these definitions (persistent / still running) on start.
    for f in /etc/libvirt/qemu/*.xml /run/libvirt/qemu/*.xml; do
        [ -f "$f" ] || continue
        n="$(sed -n 's:.*<name>\(.*\)</name>.*:\1:p' "$f" | head -n1)"
        [ -n "$n" ] || n="$(basename "$f" .xml)"
        domain_recorded "$n" || foreign+=("$n")
    done
fi
if [ "${#foreign[@]}" -gt 0 ]; then
    die "libvirt has domains these scripts did not create: $(printf '%s ' "${foreign[@]}")
  Refusing to rewrite $QEMU_CONF or (re)start libvirtd on a host in use.
  Use a dedicated test machine, or remove those domains yourself
  (virsh -c $LIBVIRT_URI undefine NAME) and run setup.sh again."
fi

# ---- 3. libvirt-qemu user and group ------------------------------------------------
if ! getent group libvirt-qemu >/dev/null; then
    groupadd -r libvirt-qemu
    record_created "group libvirt-qemu"
    log "created group libvirt-qemu"
fi
if ! getent passwd libvirt-qemu >/dev/null; then
    useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
    record_created "user libvirt-qemu"
    log "created user libvirt-qemu"
fi

mkdir -p /var/log/libvirt /var/lib/libvirt /var/cache/libvirt /run/libvirt /etc/libvirt

# ---- 4. qemu.conf ------------------------------------------------------------------
BEGIN_MARK="# BEGIN samepage-testhost (managed by scripts/testhost/setup.sh)"
END_MARK="# END samepage-testhost"
KEYS=(user group dynamic_ownership security_driver memory_backing_dir)
desired_block="$BEGIN_MARK
user = \"root\"
group = \"root\"
dynamic_ownership = 0
security_driver = \"none\"
memory_backing_dir = \"$MEMBACKING\"
$END_MARK"

current=""
[ -f "$QEMU_CONF" ] && current="$(cat "$QEMU_CONF")"
# Drop our old block and any other active setting of our keys, then append our block.
key_re="$(IFS='|'; echo "${KEYS[*]}")"
new="$(
    printf '%s\n' "$current" |
        awk -v b="$BEGIN_MARK" -v e="$END_MARK" -v re="^[[:space:]]*($key_re)[[:space:]]*=" '
            $0 == b { skip = 1; next }
            skip && $0 == e { skip = 0; next }
            skip { next }
            $0 ~ re { next }
            { print }'
)"                                               # (\$(...) drops trailing newlines)
if [ -n "$new" ]; then new="$new

$desired_block"; else new="$desired_block"; fi

conf_changed=0
if [ "$new" != "$current" ]; then
    if [ -f "$QEMU_CONF" ] && [ ! -e "$STATE/qemu.conf.orig" ] && [ ! -e "$STATE/qemu.conf.absent" ]; then
        cp -p "$QEMU_CONF" "$STATE/qemu.conf.orig"
        record_created "qemu.conf original saved as $STATE/qemu.conf.orig"
    elif [ ! -f "$QEMU_CONF" ] && [ ! -e "$STATE/qemu.conf.orig" ]; then
        : >"$STATE/qemu.conf.absent"
        record_created "qemu.conf created (there was none)"
    fi
    printf '%s\n' "$new" >"$QEMU_CONF.samepage-tmp"
    chmod 0600 "$QEMU_CONF.samepage-tmp"
    mv -f "$QEMU_CONF.samepage-tmp" "$QEMU_CONF"
    conf_changed=1
    log "wrote $QEMU_CONF (user/group root, dynamic_ownership 0, security_driver none, memory_backing_dir $MEMBACKING)"
else
    log "$QEMU_CONF already configured"
fi

# ---- 5. huge pages and hugetlbfs (before libvirtd starts: it looks for hugetlbfs once) ----
HUGEPAGES_WANTED="${SAMEPAGE_HUGEPAGES:-256}"
[[ "$HUGEPAGES_WANTED" =~ ^[0-9]+$ ]] || die "SAMEPAGE_HUGEPAGES must be a number of 2 MiB pages"
nr_file="$HUGEPAGES_2M/nr_hugepages"
[ -w "$nr_file" ] || die "$nr_file is missing or not writable (no 2 MiB huge pages in this kernel?)"
have="$(cat "$nr_file")"
if [ "$have" -lt "$HUGEPAGES_WANTED" ]; then
    # (The kernel reserves what it can; the value read back says how many.)
    echo "$HUGEPAGES_WANTED" >"$nr_file" || true
    got="$(cat "$nr_file")"
    if [ "$got" -lt "$HUGEPAGES_WANTED" ]; then
        # Memory too fragmented for that many contiguous 2 MiB pages: compact, try again.
        echo 1 >/proc/sys/vm/compact_memory 2>/dev/null || true
        echo "$HUGEPAGES_WANTED" >"$nr_file" || true
        got="$(cat "$nr_file")"
    fi
    record_created "nr_hugepages (2 MiB) raised from $have to $got"
    if [ "$got" -lt "$HUGEPAGES_WANTED" ]; then
        warn "reserved only $got of $HUGEPAGES_WANTED 2 MiB huge pages (was $have); hugepage guests may not start"
    else
        log "reserved $got 2 MiB huge pages (was $have)"
    fi
else
    log "$have 2 MiB huge pages reserved already (at least $HUGEPAGES_WANTED wanted)"
fi
if hugetlbfs_mounted; then
    log "hugetlbfs already mounted at $HUGETLBFS_MOUNT"
else
    if awk -v m="$HUGETLBFS_MOUNT" '$2 == m { found = 1 } END { exit !found }' /proc/mounts; then
        die "$HUGETLBFS_MOUNT is a mount point, but not of hugetlbfs; leaving it alone"
    fi
    mkdir -p "$HUGETLBFS_MOUNT"
    mount -t hugetlbfs -o pagesize=2M hugetlbfs "$HUGETLBFS_MOUNT" ||
        die "could not mount hugetlbfs at $HUGETLBFS_MOUNT"
    record_created "mount hugetlbfs $HUGETLBFS_MOUNT"
    log "mounted hugetlbfs (2 MiB pages) at $HUGETLBFS_MOUNT"
fi

# ---- 6. daemons ----------------------------------------------------------------------
# start_daemon NAME PIDFILE: start "NAME -d" and record "PID STARTTIME" in $STATE/NAME.pid.
start_daemon() {
    local name="$1" pidfile="$2" pid=""
    log "starting $name"
    (
        cd /
        close_inherited_fds
        LIBVIRT_LOG_OUTPUTS="3:file:$STATE/logs/$name.log" exec "$name" -d \
            </dev/null >>"$STATE/logs/$name.out" 2>&1
    ) || die "$name -d failed; see $STATE/logs/$name.out and $STATE/logs/$name.log"
    for _ in $(seq 1 100); do
        if [ -r "$pidfile" ]; then
            pid="$(tr -dc '0-9' <"$pidfile")"
            pid_alive_as "$pid" "$name" && break
        fi
        pid=""
        sleep 0.1
    done
    [ -n "$pid" ] || die "$name did not come up (no live pid in $pidfile); see $STATE/logs/$name.log"
    printf '%s %s\n' "$pid" "$(proc_starttime "$pid")" >"$STATE/$name.pid"
    log "$name running as pid $pid (recorded in $STATE/$name.pid)"
}

# stop_our_daemon NAME: stop the process recorded in $STATE/NAME.pid (if it still is it).
stop_our_daemon() {
    local name="$1" pid
    pid="$(our_daemon_pid "$name")"
    if [ -n "$pid" ]; then
        log "stopping $name pid $pid"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 150); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
        [ ! -d "/proc/$pid" ] || die "$name pid $pid did not exit within 15 s"
    fi
    rm -f "$STATE/$name.pid"
}

pid="$(virtlogd_pid)"
if [ -z "$pid" ]; then
    start_daemon virtlogd "$VIRTLOGD_PIDFILE"
else
    log "virtlogd already running (pid $pid$([ "$pid" = "$(our_daemon_pid virtlogd)" ] && echo ', started by setup.sh'))"
fi

# A libvirtd we may not restart that was running when qemu.conf changed: remembered in
# $STATE/libvirtd.needs-restart ("PID STARTTIME") so that a later run still refuses to go on.
pending="$STATE/libvirtd.needs-restart"
pid="$(libvirtd_pid)"
if [ -f "$pending" ]; then
    read -r ppid pstart <"$pending" || true
    if [ -n "$pid" ] && [ "$pid" = "${ppid:-}" ] && [ "$(proc_starttime "$pid")" = "${pstart:-}" ]; then
        conf_changed=1          # that libvirtd still has not loaded the current qemu.conf
    else
        rm -f "$pending"
    fi
fi
# A libvirtd that started before hugetlbfs was mounted does not know it (and did not create
# its directory there); it refuses <hugepages/> ("hugetlbfs filesystem is not mounted").
hugetlbfs_unseen=0
if [ -n "$pid" ] && ! libvirtd_saw_hugetlbfs; then hugetlbfs_unseen=1; fi
if [ -z "$pid" ]; then
    start_daemon libvirtd "$LIBVIRTD_PIDFILE"
elif [ "$conf_changed" -eq 1 ] || [ "$hugetlbfs_unseen" -eq 1 ]; then
    why="to apply $QEMU_CONF"
    [ "$conf_changed" -eq 1 ] || why="so that it finds hugetlbfs at $HUGETLBFS_MOUNT"
    if [ "$pid" = "$(our_daemon_pid libvirtd)" ]; then
        log "restarting libvirtd (pid $pid, started by setup.sh) $why"
        stop_our_daemon libvirtd
        start_daemon libvirtd "$LIBVIRTD_PIDFILE"
    elif [ "$conf_changed" -eq 0 ]; then
        die "the running libvirtd (pid $pid) started before hugetlbfs was mounted at $HUGETLBFS_MOUNT
  (there is no $HUGETLBFS_MOUNT/libvirt/qemu), so it refuses hugepage guests; it was not
  started by setup.sh, so it is left alone. Restart that libvirtd yourself (or stop it and let
  setup.sh start one), then run setup.sh again."
    else
        printf '%s %s\n' "$pid" "$(proc_starttime "$pid")" >"$pending"
        die "$QEMU_CONF has new settings, but the running libvirtd (pid $pid) was not started by
  setup.sh, so it is left alone and still runs with the old settings. Restart that libvirtd
  yourself (or stop it and let setup.sh start one), then run setup.sh again."
    fi
else
    log "libvirtd already running (pid $pid$([ "$pid" = "$(our_daemon_pid libvirtd)" ] && echo ', started by setup.sh'))"
fi

log "waiting for libvirt ($LIBVIRT_URI)"
deadline=$((SECONDS + 30))
until libvirt_reachable; do
    [ "$SECONDS" -lt "$deadline" ] ||
        die "'virsh -c $LIBVIRT_URI version' still fails after 30 s; see $STATE/logs/libvirtd.log"
    sleep 0.3
done
virsh -c "$LIBVIRT_URI" version | sed -e "/^[[:space:]]*$/d" -e "s/^/  /" >&2
libvirtd_saw_hugetlbfs ||
    die "libvirtd runs but did not pick up hugetlbfs at $HUGETLBFS_MOUNT (no $HUGETLBFS_MOUNT/libvirt/qemu); see $STATE/logs/libvirtd.log"

# ---- 7. guest image --------------------------------------------------------------------
"$TESTHOST_SCRIPTS/build-image.sh"

log "ready: state in $STATE; define guests with $TESTHOST_SCRIPTS/guest.sh"
