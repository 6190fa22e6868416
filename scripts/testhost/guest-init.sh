#!/bin/busybox sh
# /init of the Samepage test guest (busybox sh, PID 1 inside the guest).
# Installed into the initramfs by build-image.sh; not meant to be run on the host, except as
#   busybox sh guest-init.sh --dataset DIR POOL     (writes the data set into DIR and prints
#                                                    its hash; build-image.sh uses it to record
#                                                    the expected hash in $STATE/dataset.md5)
#
# Kernel command line parameters (read from /proc/cmdline):
#   samepage.workload=idle|dataset   default idle
#   samepage.fill=MB                 also write MB MiB of one repeated 4 KiB page and MB MiB of
#                                    zeroes into /data (tmpfs); 0 = none (default)
#   samepage.fillseed=STRING         varies the repeated fill page (default "default")
#   samepage.virtiofs=TAG            load the virtiofs modules the image carries
#                                    (/samepage/modules/order) and mount -t virtiofs TAG /mnt,
#                                    read /mnt/samepage-virtiofs.txt and write
#                                    /mnt/samepage-virtiofs-guest.txt (after GUEST-READY)
#
# Serial console protocol (one line each, on ttyS0):
#   SAMEPAGE-GUEST-READY uptime=SECONDS workload=W fill=MB
#   SAMEPAGE-FILL-DONE mb=MB uptime=SECONDS             (only when fill > 0)
#   SAMEPAGE-FILL-ERROR ...                              (e.g. tmpfs too small)
#   SAMEPAGE-DATASET-HASH <md5> uptime=SECONDS           (dataset, once written)
#   SAMEPAGE-DATASET-CHECK <md5>                         (dataset, every 2 s afterwards)
#   SAMEPAGE-VIRTIOFS-OK tag=TAG read=<first line of samepage-virtiofs.txt, printable ASCII,
#       at most 200 bytes; "-" if there is no such file> wrote=samepage-virtiofs-guest.txt|failed
#                                                        (samepage.virtiofs, once mounted)
#   SAMEPAGE-VIRTIOFS-ERROR tag=TAG ...                  (module or mount failure)
#   The guest writes "SAMEPAGE-VIRTIOFS-GUEST tag=TAG uptime=SECONDS" into
#   samepage-virtiofs-guest.txt, so the host side can check writes too.
#
# Data set (/data/dataset/f00 .. f63, 64 files x 16 pages x 4096 bytes = 4 MiB):
#   page idx = file*16 + page, kind = (file + page) % 4:
#     0  zero page
#     1  mostly zero: one byte (value 1 + idx % 255) at offset (idx * 37) % 4096
#     2  pseudo-random: bytes [off, off+4096) of /samepage/pool.bin (256 KiB, a Park-Miller
#        sequence made at build time), off = (idx * 4099) % (262144 - 4096); all distinct
#     3  the same page everywhere: "SAMEPAGE-DATASET-PATTERN " repeated to 4096 bytes
#   so each guest holds 256 pages of each kind; kinds 1 and 2 are unique pages, kind 3 is 256
#   copies of one page (also shared with every other dataset guest).
#   Hash = md5 of the output of "md5sum f00 ... f63" run inside /data/dataset.

PAGE=4096
POOL_SIZE=262144

repeat_to_page() { # repeat_to_page STRING -> exactly one 4 KiB page on stdout
    s="$1"
    while [ "${#s}" -lt "$PAGE" ]; do s="$s$s"; done
    printf '%s' "$s" | head -c "$PAGE"
}

write_dataset() { # write_dataset DIR POOL -> prints the data set hash
    dir="$1"; pool="$2"
    mkdir -p "$dir" || return 1
    head -c "$PAGE" /dev/zero >"$dir/.zero" || return 1
    repeat_to_page "SAMEPAGE-DATASET-PATTERN " >"$dir/.pattern" || return 1
    f=0
    while [ "$f" -lt 64 ]; do
        name="$(printf 'f%02d' "$f")"
        p=0
        while [ "$p" -lt 16 ]; do
            idx=$((f * 16 + p))
            case $(((f + p) % 4)) in
            0) cat "$dir/.zero" ;;
            1) off=$(((idx * 37) % PAGE))
               val=$((1 + idx % 255))
               head -c "$off" /dev/zero
               # shellcheck disable=SC2059
               printf "\\$(printf '%03o' "$val")"
               head -c $((PAGE - off - 1)) /dev/zero ;;
            2) off=$(((idx * 4099) % (POOL_SIZE - PAGE)))
               dd if="$pool" bs="$PAGE" count="$PAGE" skip="$off" \
                  iflag=skip_bytes,count_bytes 2>/dev/null ;;
            3) cat "$dir/.pattern" ;;
            esac
            p=$((p + 1))
        done >"$dir/$name" || return 1
        f=$((f + 1))
    done
    rm -f "$dir/.zero" "$dir/.pattern"
    dataset_hash "$dir"
}

dataset_hash() {
    (cd "$1" && md5sum f[0-9][0-9] | md5sum | cut -d' ' -f1)
}

# Host mode: only generate the data set (used by build-image.sh).
if [ "${1:-}" = "--dataset" ]; then
    write_dataset "$2" "$3"
    exit $?
fi

if [ "$$" -ne 1 ]; then
    echo "guest-init.sh: this is the guest's /init; on the host use --dataset DIR POOL" >&2
    exit 2
fi

# ---- guest boot ---------------------------------------------------------------
/bin/busybox mkdir -p /proc /sys /dev /data /tmp /bin /sbin /usr/bin /usr/sbin
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o size=75%,mode=0755 tmpfs /data
mount -t tmpfs -o size=16m tmpfs /tmp

workload=idle
fill=0
fillseed=default
virtiofs=""
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    samepage.workload=*) workload="${arg#*=}" ;;
    samepage.fill=*) fill="${arg#*=}" ;;
    samepage.fillseed=*) fillseed="${arg#*=}" ;;
    samepage.virtiofs=*) virtiofs="${arg#*=}" ;;
    esac
done
case "$fill" in ''|*[!0-9]*) echo "SAMEPAGE-FILL-ERROR bad samepage.fill=$fill"; fill=0 ;; esac

uptime_s() { cut -d' ' -f1 /proc/uptime; }

echo "SAMEPAGE-GUEST-READY uptime=$(uptime_s) workload=$workload fill=$fill"

mount_virtiofs() { # mount_virtiofs TAG: prints SAMEPAGE-VIRTIOFS-OK or -ERROR
    tag="$1"
    if [ ! -s /samepage/modules/order ] && ! grep -qw virtiofs /proc/filesystems; then
        echo "SAMEPAGE-VIRTIOFS-ERROR tag=$tag the image has no virtiofs modules (see build-image.sh)"
        return 1
    fi
    for m in $(cat /samepage/modules/order 2>/dev/null); do
        name="${m%.ko}"
        [ -d "/sys/module/$name" ] && continue
        if ! out="$(insmod "/samepage/modules/$m" 2>&1)"; then
            echo "SAMEPAGE-VIRTIOFS-ERROR tag=$tag insmod $m failed: $(echo "$out" | tr '\n' ' ')"
            return 1
        fi
    done
    mkdir -p /mnt
    # The device may show up a moment after virtio_pci binds it.
    i=0
    while :; do
        out="$(mount -t virtiofs "$tag" /mnt 2>&1)" && break
        i=$((i + 1))
        if [ "$i" -ge 50 ]; then
            echo "SAMEPAGE-VIRTIOFS-ERROR tag=$tag mount failed: $(echo "$out" | tr '\n' ' ') dmesg: $(dmesg | tail -n 5 | tr '\n' ' ')"
            return 1
        fi
        sleep 0.1
    done
    read="-"
    if [ -f /mnt/samepage-virtiofs.txt ]; then
        read="$(head -n1 /mnt/samepage-virtiofs.txt | head -c 200 | tr -cd ' -~')"
    fi
    wrote=samepage-virtiofs-guest.txt
    echo "SAMEPAGE-VIRTIOFS-GUEST tag=$tag uptime=$(uptime_s)" >/mnt/samepage-virtiofs-guest.txt 2>/dev/null &&
        sync || wrote=failed
    echo "SAMEPAGE-VIRTIOFS-OK tag=$tag read=$read wrote=$wrote"
}

if [ -n "$virtiofs" ]; then
    mount_virtiofs "$virtiofs" || true
fi

do_fill() { # do_fill MB SEED: MB MiB of one repeated page, MB MiB of zeroes
    repeat_to_page "SAMEPAGE-FILL-$2 " >/tmp/fill.mib || return 1
    for _ in 1 2 3 4 5 6 7 8; do           # 4 KiB doubled 8 times = 1 MiB
        cat /tmp/fill.mib /tmp/fill.mib >/tmp/fill.tmp && mv /tmp/fill.tmp /tmp/fill.mib || return 1
    done
    : >/data/fill-pattern || return 1
    i=0
    while [ "$i" -lt "$1" ]; do
        cat /tmp/fill.mib >>/data/fill-pattern || return 1
        i=$((i + 1))
    done
    dd if=/dev/zero of=/data/fill-zero bs=1048576 count="$1" 2>/dev/null
}

if [ "$fill" -gt 0 ]; then
    if do_fill "$fill" "$fillseed"; then
        echo "SAMEPAGE-FILL-DONE mb=$fill uptime=$(uptime_s)"
    else
        echo "SAMEPAGE-FILL-ERROR could not write ${fill} MiB twice into /data: $(df -k /data | tail -n1)"
    fi
    rm -f /tmp/fill.mib /tmp/fill.tmp
fi

case "$workload" in
dataset)
    if hash="$(write_dataset /data/dataset /samepage/pool.bin)"; then
        echo "SAMEPAGE-DATASET-HASH $hash uptime=$(uptime_s)"
        while :; do
            sleep 2
            echo "SAMEPAGE-DATASET-CHECK $(dataset_hash /data/dataset)"
        done
    else
        echo "SAMEPAGE-DATASET-ERROR could not write the data set"
    fi
    ;;
idle) ;;
*) echo "SAMEPAGE-WORKLOAD-ERROR unknown samepage.workload=$workload (idling)" ;;
esac

# PID 1 must never exit.
while :; do sleep 3600; done
