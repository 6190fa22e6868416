#!/usr/bin/env bash
# Usage:
#   qemu-guest.sh start NAME --layout proxmox|plain [--vmid N] [--memory MiB] [--ram memfd|file]
#                 [--workload idle|dataset] [--fill MB] [--virtiofs DIR] [--lock WORD] [--second-qmp]
#                 [--nvdimm MiB]
#   qemu-guest.sh stop NAME          quit QEMU (QMP quit, then SIGKILL), stop its virtiofsd
#   qemu-guest.sh lock NAME [WORD]   set (or, without WORD, clear) the Proxmox VM's lock: line
#   qemu-guest.sh pid NAME | qmp NAME | qmp2 NAME | uuid NAME | serial NAME | conf NAME
#   qemu-guest.sh wait-ready NAME [TIMEOUT_S]     wait for SAMEPAGE-GUEST-READY (default 60 s)
#   qemu-guest.sh wait-for NAME PATTERN [TIMEOUT_S]
#   qemu-guest.sh list | stop-all
#
# QEMU guests that libvirt does not manage, started the way their managers start them, for
# Samepage's second guest source (QMP). The same kernel, initrd and workloads as guest.sh's
# libvirt guests (TCG, 1 vCPU, no disks, no network, serial to $STATE/serial/NAME.log).
#   proxmox  as qemu-server starts a VM (but -id VMID, which upstream QEMU lacks): -name 'NAME,debug-threads=on',
#            -chardev socket,id=qmp,path=RUN/VMID.qmp,server=on,wait=off -mon chardev=qmp,mode=control,
#            -pidfile RUN/VMID.pid, -daemonize, -smbios type=1,uuid=UUID, and (virtiofs) RAM in
#            memory-backend-memfd,id=virtiofs-mem,share=on; RUN is $STATE/proxmox/run
#            (SAMEPAGE_PROXMOX_RUN) and the VM's config $STATE/proxmox/etc/VMID.conf
#            (SAMEPAGE_PROXMOX_ETC) with name:, memory:, and lock: WORD when --lock is given.
#   plain    -name NAME -uuid UUID -qmp unix:$STATE/qemu/NAME.qmp,server=on,wait=off,
#            -pidfile $STATE/qemu/NAME.pid, -daemonize, RAM in memory-backend-memfd (share=on)
#            or memory-backend-file under $STATE/qemu (share=on).
# --nvdimm MiB gives a plain guest an NVDIMM of MiB (-machine nvdimm=on, -device nvdimm) on a
# memory-backend-file in /dev/shm/samepage-nvdimm-NAME.img (share=on): tmpfs, so that only its
# being persistent memory tells it from RAM.
# --second-qmp gives a plain guest a second QMP server socket, $STATE/qemu/NAME-2.qmp (qmp2),
# for another client (an operator, a manager) while samepaged uses the first.
# --virtiofs DIR starts a virtiofsd (--socket-path=$STATE/qemu/NAME-fs.sock -o source=DIR) and
# gives the guest a vhost-user-fs-pci device on it (tag samepagefs; the guest mounts it).
# State of each guest: $STATE/qemu/NAME.env. Run setup.sh first (it builds the image).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

QDIR="$STATE/qemu"
PROXMOX_RUN="${SAMEPAGE_PROXMOX_RUN:-$STATE/proxmox/run}"
PROXMOX_ETC="${SAMEPAGE_PROXMOX_ETC:-$STATE/proxmox/etc}"

need_name() {
    [ -n "${1:-}" ] || die "missing guest NAME (see qemu-guest.sh --help)"
    valid_name "$1" || die "invalid guest name '$1' (letters, digits, _ . -; at most 63 chars)"
}
env_file() { printf '%s\n' "$QDIR/$1.env"; }
field() {
    local file; file="$(env_file "$1")"
    [ -r "$file" ] || die "no QEMU guest named '$1' was started by qemu-guest.sh"
    sed -n "s/^$2=//p" "$file" | head -n1
}
alive_pid() {
    local pidfile pid
    pidfile="$(field "$1" pidfile)"
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    [ -n "$pid" ] && [ -d "/proc/$pid" ] && [ "$(field "$1" starttime)" = "$(proc_starttime "$pid" 2>/dev/null)" ] && printf '%s\n' "$pid"
}

cmd_start() {
    local name="${1:-}"; need_name "$name"; shift
    local layout="" vmid="" memory=192 ram=memfd workload=idle fill=0 vfs_dir="" lock="" second=0 nvdimm=0
    while [ $# -gt 0 ]; do
        case "$1" in
        --layout) layout="${2:-}"; shift 2 || die "--layout needs a value" ;;
        --vmid) vmid="${2:-}"; shift 2 || die "--vmid needs a value" ;;
        --memory) memory="${2:-}"; shift 2 || die "--memory needs a value" ;;
        --ram) ram="${2:-}"; shift 2 || die "--ram needs a value" ;;
        --workload) workload="${2:-}"; shift 2 || die "--workload needs a value" ;;
        --fill) fill="${2:-}"; shift 2 || die "--fill needs a value" ;;
        --virtiofs) vfs_dir="${2:-}"; shift 2 || die "--virtiofs needs a directory" ;;
        --lock) lock="${2:-}"; shift 2 || die "--lock needs a word" ;;
        --second-qmp) second=1; shift ;;
        --nvdimm) nvdimm="${2:-}"; shift 2 || die "--nvdimm needs a size in MiB" ;;
        *) die "start: unknown option '$1'" ;;
        esac
    done
    case "$layout" in proxmox|plain) ;; *) die "start: --layout must be proxmox or plain" ;; esac
    [[ "$memory" =~ ^[0-9]+$ ]] && [ "$memory" -ge 64 ] || die "start: --memory MiB must be at least 64"
    case "$ram" in memfd|file) ;; *) die "start: --ram must be memfd or file (shared RAM)" ;; esac
    case "$workload" in idle|dataset) ;; *) die "start: --workload must be idle or dataset" ;; esac
    [[ "$fill" =~ ^[0-9]+$ ]] || die "start: --fill takes a number of MiB"
    [[ "$nvdimm" =~ ^[0-9]+$ ]] || die "start: --nvdimm takes a number of MiB"
    [ "$nvdimm" -eq 0 ] || [ "$layout" = plain ] || die "start: --nvdimm is for --layout plain"
    if [ "$layout" = proxmox ]; then
        [[ "$vmid" =~ ^[1-9][0-9]{2,8}$ ]] || die "start: --layout proxmox needs --vmid N (100 or more)"
        [ "$ram" = memfd ] || die "start: --layout proxmox takes memfd RAM (qemu-server's virtiofs-mem)"
    fi
    [ -z "$lock" ] || [[ "$lock" =~ ^[a-z]+$ ]] || die "start: --lock WORD must be lower-case letters"
    require_root
    [ -s "$STATE/vmlinuz" ] && [ -s "$STATE/guest-initrd.img" ] || "$TESTHOST_SCRIPTS/build-image.sh"
    mkdir -p "$QDIR" "$STATE/serial" "$STATE/logs" "$PROXMOX_RUN" "$PROXMOX_ETC"
    if [ -r "$(env_file "$name")" ] && [ -n "$(alive_pid "$name" || true)" ]; then
        die "$name is already running (qemu-guest.sh stop $name first)"
    fi
    local qemu; qemu="$(command -v qemu-system-x86_64)" || die "qemu-system-x86_64 not installed (run setup.sh)"
    local uuid; uuid="$(cat /proc/sys/kernel/random/uuid)"
    local log="$STATE/serial/$name.log"
    rm -f "$log"
    local cmdline="console=ttyS0 quiet loglevel=1 panic=-1 samepage.workload=$workload samepage.fill=$fill"
    local args=(-nodefaults -no-user-config -display none -vga none -accel tcg -smp 1 -m "$memory"
                -kernel "$STATE/vmlinuz" -initrd "$STATE/guest-initrd.img"
                -serial "file:$log" -no-reboot -daemonize)
    local qmp pidfile qmp2=""
    if [ "$layout" = proxmox ]; then
        qmp="$PROXMOX_RUN/$vmid.qmp"; pidfile="$PROXMOX_RUN/$vmid.pid"
        # qemu-server also passes -id VMID, an option of Proxmox's own QEMU build only.
        args=(-name "$name,debug-threads=on" -no-shutdown
              -chardev "socket,id=qmp,path=$qmp,server=on,wait=off" -mon "chardev=qmp,mode=control"
              -pidfile "$pidfile" -smbios "type=1,uuid=$uuid" "${args[@]}"
              -object "memory-backend-memfd,id=virtiofs-mem,size=${memory}M,share=on"
              -machine "type=pc,memory-backend=virtiofs-mem")
        {
            printf 'name: %s\nmemory: %s\nsmbios1: uuid=%s\n' "$name" "$memory" "$uuid"
            [ -z "$lock" ] || printf 'lock: %s\n' "$lock"
            printf '\n[pre-upgrade]\nlock: snapshot\nmemory: %s\n' "$memory"
        } >"$PROXMOX_ETC/$vmid.conf"
    else
        qmp="$QDIR/$name.qmp"; pidfile="$QDIR/$name.pid"
        local backend="memory-backend-memfd,id=mem,size=${memory}M,share=on"
        [ "$ram" = memfd ] || backend="memory-backend-file,id=mem,size=${memory}M,mem-path=$QDIR/$name.ram,share=on"
        args=(-name "$name" -uuid "$uuid" -qmp "unix:$qmp,server=on,wait=off" -pidfile "$pidfile" "${args[@]}"
              -object "$backend")
        if [ "$nvdimm" -gt 0 ]; then
            local image="/dev/shm/samepage-nvdimm-$name.img"
            rm -f "$image"
            args+=(-machine "type=pc,memory-backend=mem,nvdimm=on" -m "${memory}M,slots=2,maxmem=$((memory + nvdimm))M"
                   -object "memory-backend-file,id=nvmem0,share=on,mem-path=$image,size=${nvdimm}M"
                   -device "nvdimm,id=nvdimm0,memdev=nvmem0")
        else
            args+=(-machine "type=pc,memory-backend=mem")
        fi
        if [ "$second" -eq 1 ]; then
            qmp2="$QDIR/$name-2.qmp"
            rm -f "$qmp2"
            args+=(-qmp "unix:$qmp2,server=on,wait=off")
        fi
    fi
    local vfs_socket="" vfs_pid=""
    if [ -n "$vfs_dir" ]; then
        [ -d "$vfs_dir" ] || die "start: --virtiofs $vfs_dir is not a directory"
        [ -x "$VIRTIOFSD" ] || die "$VIRTIOFSD not found (install qemu-system-common)"
        vfs_socket="$QDIR/$name-fs.sock"
        rm -f "$vfs_socket"
        ( cd /; close_inherited_fds
          exec setsid "$VIRTIOFSD" --socket-path="$vfs_socket" -o source="$vfs_dir" </dev/null >>"$STATE/logs/virtiofsd-$name.log" 2>&1 ) &
        vfs_pid=$!
        for _ in $(seq 1 100); do unix_listening "$vfs_socket" && break; sleep 0.1; done
        unix_listening "$vfs_socket" || die "virtiofsd for $name did not listen on $vfs_socket; see $STATE/logs/virtiofsd-$name.log"
        cmdline="$cmdline samepage.virtiofs=samepagefs"
        args+=(-chardev "socket,id=char-fs,path=$vfs_socket" -device "vhost-user-fs-pci,chardev=char-fs,tag=samepagefs")
    fi
    rm -f "$qmp" "$pidfile"
    local out
    out="$(cd / && "$qemu" "${args[@]}" -append "$cmdline" 2>&1)" || {
        [ -z "$vfs_pid" ] || kill "$vfs_pid" 2>/dev/null || true
        die "QEMU did not start: $out"
    }
    local pid; pid="$(cat "$pidfile")"
    {
        printf 'layout=%s\nvmid=%s\nuuid=%s\nqmp=%s\nqmp2=%s\npidfile=%s\n' "$layout" "$vmid" "$uuid" "$qmp" "$qmp2" "$pidfile"
        printf 'starttime=%s\nvirtiofsd=%s\nvirtiofsd_socket=%s\n' "$(proc_starttime "$pid")" "$vfs_pid" "$vfs_socket"
    } >"$(env_file "$name")"
    log "started $name ($layout${vmid:+ VMID $vmid}, pid $pid, QMP $qmp, serial $log)"
}

# qmp_quit SOCKET: asks QEMU to quit, over its QMP server socket (no answer expected).
qmp_quit() {
    python3 - "$1" <<'EOF' >/dev/null 2>&1 || true
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
s.connect(sys.argv[1])
s.recv(65536)
s.sendall(b'{"execute":"qmp_capabilities"}\n')
s.recv(65536)
s.sendall(b'{"execute":"quit"}\n')
s.recv(65536)
EOF
}

cmd_stop() {
    local name="${1:-}"; need_name "$name"; require_root
    [ -r "$(env_file "$name")" ] || { log "$name was not started by qemu-guest.sh"; return 0; }
    local pid; pid="$(alive_pid "$name" || true)"
    if [ -n "$pid" ]; then
        timeout 3 bash -c "$(declare -f qmp_quit); qmp_quit '$(field "$name" qmp)'" || true
        for _ in $(seq 1 30); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
        [ ! -d "/proc/$pid" ] || kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 1 30); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    fi
    local vfs; vfs="$(field "$name" virtiofsd)"
    [ -z "$vfs" ] || { pkill -KILL -s "$vfs" 2>/dev/null || true; kill -KILL "$vfs" 2>/dev/null || true; }
    rm -f "$(field "$name" qmp)" "$(field "$name" qmp2)" "$(field "$name" pidfile)" "$QDIR/$name.ram" "/dev/shm/samepage-nvdimm-$name.img" "$(field "$name" virtiofsd_socket)"
    local vmid; vmid="$(field "$name" vmid)"
    [ -z "$vmid" ] || rm -f "$PROXMOX_ETC/$vmid.conf"
    rm -f "$(env_file "$name")"
    log "stopped $name"
}

cmd_lock() {
    local name="${1:-}" word="${2:-}"; need_name "$name"
    local vmid; vmid="$(field "$name" vmid)"
    [ -n "$vmid" ] || die "$name is not a Proxmox-style VM"
    local conf="$PROXMOX_ETC/$vmid.conf"
    # Only the main section (before the first [snapshot]) holds the VM's own lock.
    awk -v word="$word" '
        /^\[/ { if (!done && word != "") print "lock: " word; done = 1 }
        !done && /^lock:/ { next }
        { print }
        END { if (!done && word != "") print "lock: " word }' "$conf" >"$conf.tmp"
    mv -f "$conf.tmp" "$conf"
}

cmd_wait_for() {
    local name="$1" pattern="$2" timeout="${3:-60}" log="$STATE/serial/$1.log"
    local deadline=$((SECONDS + timeout))
    while [ $SECONDS -lt $deadline ]; do
        grep -qE -- "$pattern" "$log" 2>/dev/null && return 0
        [ -n "$(alive_pid "$name" || true)" ] || die "$name exited before printing '$pattern'"
        sleep 0.5
    done
    die "$name did not print '$pattern' within $timeout s (serial: $log)"
}

cmd_list() {
    local file name
    for file in "$QDIR"/*.env; do
        [ -e "$file" ] || continue
        name="$(basename "$file" .env)"
        printf '%s\t%s\t%s\n' "$name" "$(field "$name" layout)" "$(alive_pid "$name" || echo exited)"
    done
}

case "${1:-}" in
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "${1:-}" ;;
lock) shift; cmd_lock "${1:-}" "${2:-}" ;;
pid) shift; need_name "${1:-}"; alive_pid "$1" || die "$1 is not running" ;;
qmp) shift; need_name "${1:-}"; field "$1" qmp ;;
qmp2) shift; need_name "${1:-}"; v="$(field "$1" qmp2)"; [ -n "$v" ] || die "$1 has no second QMP socket (--second-qmp)"; printf '%s\n' "$v" ;;
uuid) shift; need_name "${1:-}"; field "$1" uuid ;;
conf) shift; need_name "${1:-}"; v="$(field "$1" vmid)"; [ -n "$v" ] || die "$1 is not a Proxmox-style VM"; printf '%s\n' "$PROXMOX_ETC/$v.conf" ;;
serial) shift; need_name "${1:-}"; printf '%s\n' "$STATE/serial/$1.log" ;;
wait-ready) shift; need_name "${1:-}"; cmd_wait_for "$1" SAMEPAGE-GUEST-READY "${2:-60}" ;;
wait-for) shift; need_name "${1:-}"; cmd_wait_for "$1" "${2:?wait-for needs a PATTERN}" "${3:-60}" ;;
list) cmd_list ;;
stop-all) for f in "$QDIR"/*.env; do [ -e "$f" ] && cmd_stop "$(basename "$f" .env)"; done; true ;;
-h|--help|help|"") usage ;;
*) die "unknown command '$1' (see qemu-guest.sh --help)" ;;
esac
