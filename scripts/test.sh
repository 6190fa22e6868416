#!/usr/bin/env bash
# Usage: scripts/test.sh [swift test arguments...]
#
# Sets up this machine for Samepage's tests and runs them: packages, libvirtd and the guest
# image (scripts/testhost/setup.sh), then `swift test`, a short run of the fuzz targets
# (scripts/fuzz.sh), then the Debian package
# (packaging/test-package.sh: build, install, run, purge). The end-to-end tests start and tear
# down their own real QEMU guests with scripts/testhost/guest.sh. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v swift >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"

scripts/testhost/setup.sh
swift build --build-tests
# One test at a time: the end-to-end suites share libvirtd (one of them restarts it) and the
# machine's two cores with their guests.
swift test --skip-build --no-parallel "$@"
# The fuzz targets, a few seconds each, after replaying every crash kept (scripts/fuzz.sh).
SAMEPAGE_FUZZ_DEPS=$(swift build --show-bin-path) scripts/fuzz.sh --seconds 3
packaging/test-package.sh || [ $? -eq 77 ]   # the Debian package; 77: skipped (says why)
