#!/usr/bin/env bash
# Usage: build-image.sh [--force]
#
# Builds the Samepage test guest image into the state directory
# (SAMEPAGE_TESTHOST_DIR, default /var/lib/samepage-testhost):
#   $STATE/vmlinuz            copy of the newest /boot/vmlinuz-* (or SAMEPAGE_GUEST_KERNEL)
#   $STATE/guest-initrd.img   busybox initramfs (cpio newc, gzip); /init = guest-init.sh
#   $STATE/dataset.md5        the hash the "dataset" workload must print
#   $STATE/image.stamp        inputs of the last build; the build is skipped when unchanged
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

stamp="$(
    {
        sha256sum "$INIT" "$0" "$BUSYBOX" "$kernel" | cut -d' ' -f1
        printf '%s\n' "$kernel"
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
