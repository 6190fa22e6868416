#!/usr/bin/env bash
# Usage: teardown.sh [--guests-only]
#
# Undoes setup.sh / guest.sh:
#   - destroys and undefines the domains recorded in $STATE/domains (and only those), and
#     stops the external virtiofsd guest.sh started for them ($STATE/virtiofs/NAME.pid),
#     and stops the QEMU guests outside libvirt that qemu-guest.sh started,
#   - unless --guests-only: stops the libvirtd and virtlogd that setup.sh started, identified
#     by the pid and start time recorded in $STATE/{libvirtd,virtlogd}.pid (never by name).
#     Daemons it did not start are left running.
# Leaves packages, /etc/libvirt/qemu.conf (original in $STATE/qemu.conf.orig, if there was
# one), the libvirt-qemu user, the huge pages setup.sh reserved, the hugetlbfs mount at
# /dev/hugepages and the guest image in place. Idempotent.
# State: SAMEPAGE_TESTHOST_DIR (default /var/lib/samepage-testhost).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

guests_only=0
case "${1:-}" in
"") ;;
--guests-only) guests_only=1 ;;
-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
*) die "unknown argument '$1' (usage: teardown.sh [--guests-only])" ;;
esac

require_root
[ -d "$STATE" ] || { log "nothing to do ($STATE does not exist)"; exit 0; }

# ---- guests ----------------------------------------------------------------------
mapfile -t names < <(recorded_domains)
if [ "${#names[@]}" -gt 0 ]; then
    libvirt_reachable ||
        die "libvirt is not reachable, cannot remove the recorded guests (${names[*]}); run setup.sh, then teardown.sh"
    failed=0
    for n in "${names[@]}"; do
        if domain_exists "$n"; then
            if domain_running "$n"; then
                virsh_ destroy "$n" >/dev/null || { warn "virsh destroy $n failed"; failed=1; continue; }
            fi
            virsh_ undefine "$n" >/dev/null || { warn "virsh undefine $n failed"; failed=1; continue; }
            log "removed guest $n"
        else
            log "guest $n was already gone"
        fi
        stop_our_virtiofsd "$n"
        unrecord_domain "$n"
        rm -f "$STATE/xml/$n.xml" "$STATE/virtiofs/$n.conf"
    done
    [ "$failed" -eq 0 ] || die "some guests could not be removed (still listed in $STATE/domains)"
else
    log "no recorded guests"
fi

# QEMU guests outside libvirt that qemu-guest.sh started.
if ls "$STATE"/qemu/*.env >/dev/null 2>&1; then
    "$TESTHOST_SCRIPTS/qemu-guest.sh" stop-all
fi

[ "$guests_only" -eq 0 ] || exit 0

# ---- daemons ---------------------------------------------------------------------
stop_recorded() {
    local name="$1" rec="$STATE/$1.pid" pid
    if [ ! -f "$rec" ]; then
        local other; other="$(running_daemon_pid "$name" "/run/$name.pid")"
        [ -z "$other" ] || log "$name (pid $other) was not started by setup.sh; leaving it running"
        return 0
    fi
    pid="$(our_daemon_pid "$name")"
    if [ -z "$pid" ]; then
        log "$name recorded in $rec is no longer running"
        rm -f "$rec"
        return 0
    fi
    log "stopping $name (pid $pid, started by setup.sh)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    if [ -d "/proc/$pid" ] && [ "$(proc_starttime "$pid")" = "$(cut -d' ' -f2 "$rec")" ]; then
        warn "$name pid $pid ignored SIGTERM for 15 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    fi
    rm -f "$rec"
}

# libvirtd first: it talks to virtlogd.
stop_recorded libvirtd
stop_recorded virtlogd
log "done"
