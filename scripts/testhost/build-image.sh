#!/usr/bin/env bash
# Usage: build-image.sh [--force]
#
# Builds the Samepage test guest image into the state directory
# (SAMEPAGE_TESTHOST_DIR, default /var/lib/samepage-testhost):
#   $STATE/vmlinuz            copy of the newest /boot/vmlinuz-* (or SAMEPAGE_GUEST_KERNEL)
#   $STATE/guest-initrd.img   busybox initramfs (cpio newc, gzip); /init = guest-init.sh
#   $STATE/dataset.md5        the hash the "dataset" workload must print
#   $STATE/image.stamp        inputs of the last build; the build is skipped when unchanged
# The initramfs also carries the kernel modules a virtiofs guest needs (virtio_pci, virtiofs
# and their modules.dep dependencies: virtio, virtio_ring, virtio_pci_*_dev, fuse) from
# /lib/modules/VERSION (VERSION from the kernel's file name vmlinuz-VERSION, or
# SAMEPAGE_GUEST_MODULES=DIR), in /samepage/modules/ with the load order in
# /samepage/modules/order; guest-init.sh loads them only for samepage.virtiofs=TAG. Modules
# the kernel has built in (modules.builtin) are skipped; without a module directory the image
# is built without them (and a virtiofs guest reports SAMEPAGE-VIRTIOFS-ERROR).
# Needs busybox-static, cpio, gzip (setup.sh installs them). Idempotent; --force rebuilds.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

force=0
case "${1:-}" in
"") ;;
--force) force=1 ;;
-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
*) die "unknown argument '$1' (usage: build-image.sh [--force])" ;;
esac

require_root
ensure_state_dir

BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing: install busybox-static (setup.sh does)"
if ! "$BUSYBOX" --help >/dev/null 2>&1 || ldd "$BUSYBOX" >/dev/null 2>&1; then
    die "$BUSYBOX is not a static busybox: install busybox-static (setup.sh does)"
fi
command -v cpio >/dev/null || die "cpio missing (setup.sh installs it)"

kernel="${SAMEPAGE_GUEST_KERNEL:-}"
if [ -z "$kernel" ]; then
    kernel="$(find /boot -maxdepth 1 -name 'vmlinuz-*' -type f | sort -V | tail -n1)"
fi
[ -n "$kernel" ] && [ -r "$kernel" ] ||
    die "no guest kernel in /boot (install linux-image-cloud-amd64, or set SAMEPAGE_GUEST_KERNEL)"

INIT="$TESTHOST_SCRIPTS/guest-init.sh"
[ -r "$INIT" ] || die "$INIT missing"

# ---- guest kernel modules for virtiofs ---------------------------------------------
# Wanted: virtio_pci (the transport of vhost-user-fs-pci) and virtiofs, each after the
# modules it depends on (modules.dep lists a module's dependencies, all of them, transitively).
GUEST_MODULES=(virtio_pci virtiofs)
moddir="${SAMEPAGE_GUEST_MODULES:-}"
if [ -z "$moddir" ]; then
    kver="$(basename "$kernel")"; kver="${kver#vmlinuz-}"
    moddir="/lib/modules/$kver"
fi
modfiles=()                     # paths relative to $moddir, in load order
if [ -r "$moddir/modules.dep" ]; then
    declare -A seen=()
    # add_module RELPATH: its dependencies first (each resolved recursively), then itself.
    add_module() {
        local rel="$1" line dep
        [ -z "${seen[$rel]:-}" ] || return 0
        seen[$rel]=1
        line="$(awk -F: -v r="$rel" '$1 == r { print $2; exit }' "$moddir/modules.dep")"
        for dep in $line; do add_module "$dep"; done
        modfiles+=("$rel")
    }
    for m in "${GUEST_MODULES[@]}"; do
        # modules.dep names files (e.g. kernel/fs/fuse/virtiofs.ko[.xz|.zst]); '-' and '_' are
        # the same in module names.
        rel="$(grep -m1 -E "^([^:]*/)?(${m//_/[_-]})\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | cut -d: -f1)"
        if [ -n "$rel" ]; then
            add_module "$rel"
        elif grep -qE "/${m//_/[_-]}\.ko\$" "$moddir/modules.builtin" 2>/dev/null; then
            :                    # built into the kernel
        else
            warn "guest kernel module $m not found in $moddir (virtiofs guests will not mount)"
        fi
    done
else
    warn "no $moddir/modules.dep: the image gets no kernel modules (virtiofs guests will not mount)"
fi

stamp="$(
    {
        sha256sum "$INIT" "$0" "$BUSYBOX" "$kernel" | cut -d' ' -f1
        printf '%s\n' "$kernel"
        for rel in "${modfiles[@]}"; do
            printf '%s %s\n' "$rel" "$(sha256sum "$moddir/$rel" | cut -d' ' -f1)"
        done
    } | sha256sum | cut -d' ' -f1
)"
if [ "$force" -eq 0 ] && [ -s "$STATE/vmlinuz" ] && [ -s "$STATE/guest-initrd.img" ] &&
   [ -s "$STATE/dataset.md5" ] && [ "$(cat "$STATE/image.stamp" 2>/dev/null)" = "$stamp" ]; then
    log "guest image up to date ($STATE/guest-initrd.img, kernel $(basename "$kernel"))"
    exit 0
fi

work="$(mktemp -d "$STATE/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,data,tmp,samepage}
cp "$BUSYBOX" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
install -m 0755 "$INIT" "$root/init"
# The kernel opens /dev/console for /init's stdio before /init mounts devtmpfs.
mknod -m 0600 "$root/dev/console" c 5 1 2>/dev/null || warn "mknod /dev/console failed (init redirects later)"
mknod -m 0666 "$root/dev/null" c 1 3 2>/dev/null || true

# Kernel modules, uncompressed (busybox insmod may not read .xz/.zst), plus their load order.
mkdir -p "$root/samepage/modules"
: >"$root/samepage/modules/order"
for rel in "${modfiles[@]}"; do
    base="$(basename "$rel")"; name="${base%%.ko*}.ko"
    case "$base" in
    *.ko) cp "$moddir/$rel" "$root/samepage/modules/$name" ;;
    *.ko.xz) xz -dc "$moddir/$rel" >"$root/samepage/modules/$name" ;;
    *.ko.zst) zstd -qdc "$moddir/$rel" >"$root/samepage/modules/$name" ;;
    *.ko.gz) gzip -dc "$moddir/$rel" >"$root/samepage/modules/$name" ;;
    *) die "unknown module file type: $moddir/$rel" ;;
    esac || die "could not copy guest kernel module $moddir/$rel"
    printf '%s\n' "$name" >>"$root/samepage/modules/order"
done

# 256 KiB of deterministic pseudo-random bytes (Park-Miller, values 1..255) for the data set.
"$BUSYBOX" awk 'BEGIN { x = 12345
    for (i = 0; i < 262144; i++) { x = (x * 16807) % 2147483647; printf "%c", 1 + (x % 255) } }' \
    >"$root/samepage/pool.bin"
[ "$(stat -c %s "$root/samepage/pool.bin")" -eq 262144 ] || die "pool.bin has the wrong size"

# Expected data set hash: run the guest's own generator with the same busybox applets.
mkdir -p "$work/bb"
for applet in sh head cat dd md5sum cut printf mkdir rm; do ln -s "$BUSYBOX" "$work/bb/$applet"; done
hash="$(PATH="$work/bb" "$BUSYBOX" sh "$INIT" --dataset "$work/dataset" "$root/samepage/pool.bin")"
[[ "$hash" =~ ^[0-9a-f]{32}$ ]] || die "data set generator failed (got '$hash')"

find "$root" -exec touch -h -d @0 {} +      # reproducible archive
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible) |
    gzip -9n >"$work/guest-initrd.img"
cp "$kernel" "$work/vmlinuz"

mv -f "$work/guest-initrd.img" "$STATE/guest-initrd.img"
mv -f "$work/vmlinuz" "$STATE/vmlinuz"
printf '%s\n' "$hash" >"$STATE/dataset.md5"
printf '%s\n' "$stamp" >"$STATE/image.stamp"
log "built $STATE/guest-initrd.img ($(stat -c %s "$STATE/guest-initrd.img") bytes) and $STATE/vmlinuz (from $kernel)"
log "expected dataset hash: $hash"
if [ "${#modfiles[@]}" -gt 0 ]; then
    log "guest kernel modules (for virtiofs): $(tr '\n' ' ' <"$root/samepage/modules/order")"
fi
