#!/usr/bin/env bash
# Usage: scripts/demo.sh
#
# The demo, from a fresh Debian machine, as root: installs what Samepage needs (packages,
# libvirtd as in shared/TEST-HOST.md, a busybox guest image), starts three 256 MiB demo guests
# with shared RAM (two identical memfd guests and a file-backed one), builds Samepage, and
# lets it discover the guests through libvirt, map their RAM and scan it. It prints each
# guest (mapped or why not) and KSM's counters. Guests stay running; remove them with
#   scripts/testhost/teardown.sh --guests-only
set -euo pipefail
cd "$(dirname "$0")/.."
command -v swift >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"

scripts/testhost/demo-guests.sh
echo "== building samepage (release)"
swift build -c release --product samepage 2>&1 | tail -1
echo "== samepage guests --trust-group demo --passes 3"
.build/release/samepage guests --trust-group demo --passes 3
