#!/usr/bin/env bash
# Usage: demo-guests.sh
#
# Runs setup.sh, then defines and starts three 256 MiB demo guests and waits until each
# prints SAMEPAGE-GUEST-READY on its serial console:
#   samepage-demo-1   memfd RAM, --fill 32             (identical content to -2)
#   samepage-demo-2   memfd RAM, --fill 32
#   samepage-demo-3   memfd RAM, --fill 16 --fill-seed demo3 (different content)
# Guests that are already running are left as they are. Remove them with
#   teardown.sh --guests-only      (or teardown.sh to also stop the daemons setup.sh started)
# State: SAMEPAGE_TESTHOST_DIR (default /var/lib/samepage-testhost).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

case "${1:-}" in
"") ;;
-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
*) die "unknown argument '$1' (usage: demo-guests.sh)" ;;
esac

require_root
"$TESTHOST_SCRIPTS/setup.sh"

G="$TESTHOST_SCRIPTS/guest.sh"
define_and_start() {
    local name="$1"; shift
    if domain_recorded "$name" && domain_running "$name"; then
        log "$name already running"
        return 0
    fi
    # Defined by an earlier demo and shut off since (libvirtd or the machine restarted): its
    # definition (RAM, fill) is the demo's, so it is started again, not defined twice.
    if domain_recorded "$name"; then
        "$G" start "$name"
        return 0
    fi
    "$G" define "$name" --memory 256 "$@" --start
}

define_and_start samepage-demo-1 --ram memfd --fill 32
define_and_start samepage-demo-2 --ram memfd --fill 32
define_and_start samepage-demo-3 --ram memfd --fill 16 --fill-seed demo3

for n in samepage-demo-1 samepage-demo-2 samepage-demo-3; do
    "$G" wait-ready "$n" 120
done
for n in samepage-demo-1 samepage-demo-2 samepage-demo-3; do
    "$G" wait-for "$n" 'SAMEPAGE-FILL-(DONE|ERROR)' 120
done
for n in samepage-demo-1 samepage-demo-2 samepage-demo-3; do
    printf '%-18s qemu pid %-8s serial %s\n' "$n" "$("$G" pid "$n")" "$("$G" serial "$n")"
done
