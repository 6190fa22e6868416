#!/usr/bin/env bash
# Usage: packaging/test-package.sh [--deb FILE] [--configuration release|debug]
#
# Tests the Debian package end to end, as root, and leaves the machine as it found it:
#   1. refuses (exit 1) if the package or any of its paths (/etc/samepage, /usr/sbin/samepaged,
#      ...) is already on this machine, since its purge would delete them; SKIPS (exit 77)
#      if a samepaged answers on /run/samepage/samepaged.sock, which it leaves alone, or
#      something listens on the packaged metrics.address (127.0.0.1:10460). An
#      existing /var/lib/samepage holding only an empty pause journal (as a samepaged run by
#      hand leaves it) is moved aside and put back at the end; SKIPS if a samepaged runs then;
#   2. builds the package with packaging/build-deb.sh (release unless --configuration), or
#      takes FILE from --deb or $SAMEPAGE_DEB, and checks its control data and conffiles;
#   3. dpkg -i, then asserts: every file in place, /etc/samepage/samepaged.toml a conffile
#      equal to config/samepaged.toml, the unit enabled and passing `systemd-analyze
#      verify`, the man pages rendering without warnings and naming every option of
#      every --help, `samepaged --version` and `samepage --help` working with /opt/swift
#      hidden, the Prometheus rules in /usr/share/samepage/prometheus (and accepted by promtool
#      when it is there), and the unit's CapabilityBoundingSet enough to do what samepaged does to a
#      QEMU that runs as another user (read maps, pagemap and fd, open map_files read-write,
#      pread, mincore, punch a hole, dump Unix sockets with sock_diag; a stand-in process
#      plays QEMU);
#   4. runs the installed samepaged with the packaged configuration: with systemctl when
#      systemd is PID 1, else directly, the unit imitated as far as it can be without
#      systemd (clean environment, the unit's capability bounding set, no_new_privs,
#      MemoryDenyWriteExecute through PR_SET_MDWE where the kernel has it); asserts
#      `samepage stats` answers on /run/samepage/samepaged.sock, libvirt is connected, no
#      guest is mapped (policy "off"), http://127.0.0.1:10460/metrics answers, SIGHUP is
#      survived, SIGTERM exits 0 and removes the socket, and the unit's ExecStopPost
#      (samepaged --resume-paused) exits 0;
#   5. dpkg -r: binaries, unit and man pages gone, the conffile kept; dpkg -P: /etc/samepage,
#      /var/lib/samepage and the unit's enablement gone.
# On any failure (or interrupt) the package is purged before exiting. libvirtd must be
# running; if it is not, scripts/testhost/setup.sh is run to start it.
set -euo pipefail
# With pipefail, `producer | grep -q` fails whenever grep matches and exits before the producer
# has written everything (SIGPIPE): this script greps captured text instead.

PROG="$(basename "$0")"
log()  { printf '%s: %s\n' "$PROG" "$*" >&2; }
die()  { printf '%s: FAILED: %s\n' "$PROG" "$*" >&2; exit 1; }
skip() { printf '%s: SKIPPED: %s\n' "$PROG" "$*" >&2; exit 77; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
ok()   { printf '%s: ok: %s\n' "$PROG" "$*" >&2; }

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEB="${SAMEPAGE_DEB:-}"
CONFIGURATION=release
while [ $# -gt 0 ]; do
    case "$1" in
    --deb)
        [ $# -ge 2 ] || die "--deb needs a file"
        DEB="$2"; shift 2 ;;
    --configuration|-c)
        [ $# -ge 2 ] || die "$1 needs a value (release or debug)"
        CONFIGURATION="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see $PROG --help)" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "must run as root (dpkg -i, and samepaged needs root)"
cd "$ROOT"
command -v swift >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"
for tool in dpkg dpkg-deb dpkg-query setpriv unshare gzip groff man; do
    command -v "$tool" >/dev/null || die "'$tool' not found"
done
# Debian's python3 (the helpers run as other users, where a python3 under /root is out of reach).
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || die "$PYTHON not found (apt-get install python3; scripts/testhost/setup.sh does)"

SOCKET=/run/samepage/samepaged.sock
SERVICE=samepaged.service
UNIT=/lib/systemd/system/$SERVICE
CONFFILE=/etc/samepage/samepaged.toml
STATE_DIR=/var/lib/samepage
RULES=/usr/share/samepage/prometheus/samepage-rules.yml
SHIPPED=(/usr/sbin/samepaged /usr/bin/samepage "$UNIT" /etc/samepage
         /usr/share/man/man8/samepaged.8.gz /usr/share/man/man1/samepage.1.gz /usr/share/doc/samepage
         /usr/share/samepage)

package_status() { dpkg-query -W -f='${db:Status-Status}' samepage 2>/dev/null || true; }

# Whether something accepts connections on the Unix socket $1.
socket_answers() {
    "$PYTHON" - "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(2)
try:
    s.connect(sys.argv[1])
except OSError:
    sys.exit(1)
PY
}

# Whether something accepts TCP connections on HOST:PORT ([IPV6]:PORT).
tcp_answers() {
    "$PYTHON" - "$1" <<'PY'
import socket, sys
host, _, port = sys.argv[1].rpartition(":")
try:
    socket.create_connection((host.strip("[]"), int(port)), timeout=2).close()
except OSError:
    sys.exit(1)
PY
}

# ---- 1. is this machine free for the test? ---------------------------------------------------
if [ -S "$SOCKET" ] && socket_answers "$SOCKET"; then
    skip "a samepaged already answers on $SOCKET; this test needs that socket and leaves
  that daemon alone. Stop it (or run the test on another machine) to test the package."
fi
# The packaged configuration (config/samepaged.toml) serves metrics; samepaged refuses to
# start on a busy address.
METRICS="$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb")).get("metrics", {}).get("address", "127.0.0.1:10460"))' config/samepaged.toml)" ||
    die "cannot read metrics.address from config/samepaged.toml"
if [ -n "$METRICS" ] && tcp_answers "$METRICS"; then
    skip "something already listens on $METRICS, the packaged configuration's metrics.address,
  where the packaged samepaged must listen. Stop it to test the package."
fi
status="$(package_status)"
[ -z "$status" ] || [ "$status" = "not-installed" ] ||
    die "the samepage package is on this machine (status: $status); this test installs and purges
  it, so remove it first: dpkg -P samepage"
for path in "${SHIPPED[@]}"; do
    [ ! -e "$path" ] ||
        die "$path exists but no samepage package is installed; the package would overwrite it and
  its purge would delete it. Move it away to run this test."
done
# /var/lib/samepage is also the default pause journal of a samepaged run by hand (the demo's):
# an empty journal is moved aside for the test and put back afterwards; anything else stops it.
SAVE_STATE=0
if [ -e "$STATE_DIR" ]; then
    running="$(pgrep -x samepaged | tr '\n' ' ' || true)"
    [ -z "$running" ] ||
        skip "$STATE_DIR exists and samepaged runs (pid $running); it may use $STATE_DIR/paused.json,
  which the package's purge would delete. Stop it to test the package."
    [ -z "$(find "$STATE_DIR" -mindepth 1 ! -path "$STATE_DIR/paused.json" ! -path "$STATE_DIR/paused.json.lock" ! -path "$STATE_DIR/journals.json" | head -n1)" ] ||
        die "$STATE_DIR holds files other than the pause journal, its lock and its index; move them away to run this test."
    # Empty in either format: [] (format 1) or {"format":2,"pauses":[]}.
    journal_text="$( [ -e "$STATE_DIR/paused.json" ] && tr -d ' \t\n' <"$STATE_DIR/paused.json" || true)"
    if [ -n "$journal_text" ] && [ "$journal_text" != "[]" ] && [ "$journal_text" != '{"format":2,"pauses":[]}' ]; then
        die "$STATE_DIR/paused.json lists guests paused by a samepaged that did not resume them:
  $(cat "$STATE_DIR/paused.json")
  Run 'samepaged --resume-paused' (with that samepaged's --config) first."
    fi
    SAVE_STATE=1
fi

# ---- 2. the package ---------------------------------------------------------------------------
if [ -n "$DEB" ]; then
    [ -f "$DEB" ] || die "--deb/SAMEPAGE_DEB: no file $DEB"
    log "testing $DEB (not rebuilt)"
else
    log "building the package (packaging/build-deb.sh --configuration $CONFIGURATION)"
    start=$SECONDS
    DEB="$(packaging/build-deb.sh --configuration "$CONFIGURATION")" || die "packaging/build-deb.sh failed"
    log "built $DEB in $((SECONDS - start)) s"
fi
DEB="$(cd "$(dirname "$DEB")" && pwd)/$(basename "$DEB")"

[ "$(dpkg-deb -f "$DEB" Package)" = samepage ] || die "$DEB is not the samepage package"
DEB_VERSION="$(dpkg-deb -f "$DEB" Version)"
VERSION="${DEB_VERSION%-*}"
depends="$(dpkg-deb -f "$DEB" Depends)"
for lib in libvirt0 libxxhash0 libc6; do
    grep -qw "$lib" <<<"$depends" || die "Depends: lacks $lib: $depends"
done
! grep -qi swift <<<"$depends" || die "Depends: names a Swift package: $depends"
conffiles="$(dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles)" || die "$DEB has no conffiles"
grep -qxF "$CONFFILE" <<<"$conffiles" || die "$CONFFILE is not in the package's conffiles: $conffiles"
ok "control data: version $DEB_VERSION, Depends: $depends; conffiles: $(tr '\n' ' ' <<<"$conffiles")"
if command -v lintian >/dev/null; then
    # Clean: no error and no warning (the overrides in packaging/debian/lintian-overrides say
    # why each one left is not a defect of the package).
    rc=0
    out="$(lintian --fail-on error,warning "$DEB" 2>&1)" || rc=$?
    out="$(grep -v '^running with root privileges' <<<"$out" || true)"
    [ "$rc" -eq 0 ] || die "lintian found errors or warnings in $DEB (exit $rc):
$out"
    ok "lintian: no errors, no warnings"
else
    log "lintian is not installed: the package is not linted (scripts/testhost/setup.sh installs it)"
fi

# ---- from here on, the package is purged on any exit -------------------------------------------
RUN_DIR_EXISTED=0
[ ! -e "$(dirname "$SOCKET")" ] || RUN_DIR_EXISTED=1
WORK="$(mktemp -d /tmp/samepage-package-test.XXXXXX)"
DAEMON_PID=""
STANDIN_PID=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DAEMON_PID" 2>/dev/null || true
    fi
    if [ -n "$STANDIN_PID" ]; then kill -KILL "$STANDIN_PID" 2>/dev/null || true; fi
    if [ -d /run/systemd/system ] && [ -f "$UNIT" ]; then systemctl stop "$SERVICE" 2>/dev/null || true; fi
    status="$(package_status)"
    if [ -n "$status" ] && [ "$status" != "not-installed" ]; then
        [ "$rc" -eq 0 ] || log "purging the samepage package after the failure"
        dpkg -P samepage >"$WORK/dpkg-cleanup.log" 2>&1 || { cat "$WORK/dpkg-cleanup.log" >&2; rc=1; }
    fi
    rm -rf /dev/shm/samepage-package-test.* 2>/dev/null || true
    # samepaged run without systemd creates the socket's directory and leaves it.
    [ "$RUN_DIR_EXISTED" -eq 1 ] || rmdir "$(dirname "$SOCKET")" 2>/dev/null || true
    if [ -e "$WORK/saved-state" ]; then
        if [ ! -e "$STATE_DIR" ] && mv "$WORK/saved-state" "$STATE_DIR"; then
            log "put the previous $STATE_DIR back"
        else
            log "could not put the previous $STATE_DIR back; it is in $WORK/saved-state"
            rc=1
        fi
    fi
    [ "$rc" -eq 0 ] && rm -rf "$WORK"
    [ "$rc" -eq 0 ] || log "logs kept in $WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ "$SAVE_STATE" -eq 1 ]; then
    mv "$STATE_DIR" "$WORK/saved-state" || die "cannot move $STATE_DIR aside"
    log "moved the existing $STATE_DIR (an empty pause journal, its lock, the journal index) to $WORK/saved-state for the test"
fi

# ---- 3. install ---------------------------------------------------------------------------------
log "dpkg -i $(basename "$DEB")"
if ! dpkg -i "$DEB" >"$WORK/dpkg-install.log" 2>&1; then
    cat "$WORK/dpkg-install.log" >&2
    log "dpkg -i failed; trying apt-get install -f for missing dependencies"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -f >>"$WORK/dpkg-install.log" 2>&1 ||
        die "apt-get install -f failed (see $WORK/dpkg-install.log)"
fi
[ "$(package_status)" = installed ] || die "samepage is not installed after dpkg -i (status: $(package_status))"
ok "installed"

for f in /usr/sbin/samepaged /usr/bin/samepage; do
    { [ -f "$f" ] && [ -x "$f" ]; } || die "$f missing or not executable"
done
for f in "$UNIT" "$CONFFILE" /etc/samepage/guests.d/default.toml.sample /etc/samepage/guests.d/example.toml.sample \
         /usr/share/man/man8/samepaged.8.gz /usr/share/man/man1/samepage.1.gz \
         /usr/share/bash-completion/completions/samepage \
         /usr/share/doc/samepage/copyright /usr/share/doc/samepage/README.md /usr/share/doc/samepage/changelog.Debian.gz \
         "$RULES"; do
    [ -f "$f" ] || die "$f missing after install"
done
cmp -s "$RULES" packaging/prometheus/samepage-rules.yml || die "$RULES differs from packaging/prometheus/samepage-rules.yml"
if command -v promtool >/dev/null; then
    out="$(promtool check rules "$RULES" 2>&1)" || die "promtool check rules $RULES failed: $out"
fi
[ -d "$STATE_DIR" ] || die "$STATE_DIR not created by postinst"
[ "$(stat -c %a "$STATE_DIR")" = 700 ] || die "$STATE_DIR has mode $(stat -c %a "$STATE_DIR"), not 700"
cmp -s "$CONFFILE" config/samepaged.toml || die "$CONFFILE differs from config/samepaged.toml"
# The unit's first ExecReload: the packaged configuration passes it, a broken copy does not.
out="$(/usr/sbin/samepaged --check-config 2>&1)" || die "samepaged --check-config fails on the packaged files: $out"
bad="$(mktemp)"
printf '[libvirt]\nurl = "x"\n' >"$bad"
if /usr/sbin/samepaged --check-config --config "$bad" >/dev/null 2>&1; then rm -f "$bad"; die "samepaged --check-config accepted an unknown key"; fi
rm -f "$bad"
[ -f /usr/share/zsh/vendor-completions/_samepage ] || die "the zsh completion is missing"
grep -q "^ $CONFFILE " <<<"$(dpkg-query -W -f='${Conffiles}\n' samepage)" ||
    die "dpkg does not list $CONFFILE as a conffile of samepage"
ok "files in place; $CONFFILE is a conffile"

if command -v deb-systemd-helper >/dev/null; then
    [ -L /etc/systemd/system/multi-user.target.wants/$SERVICE ] ||
        die "postinst did not enable $SERVICE (no multi-user.target.wants link)"
    ok "$SERVICE enabled"
fi
if command -v systemd-analyze >/dev/null; then
    verify="$(systemd-analyze verify "$UNIT" 2>&1)" || die "systemd-analyze verify $UNIT: $verify"
    [ -z "$verify" ] || die "systemd-analyze verify $UNIT warns: $verify"
    ok "systemd-analyze verify $UNIT"
fi

# The binaries need nothing from the Swift toolchain: run them with /opt/swift hidden.
hidden() { unshare --mount sh -c 'if [ -d /opt/swift ]; then mount -t tmpfs -o ro,size=4k none /opt/swift; fi; exec "$@"' hidden "$@"; }
missing="$(ldd /usr/sbin/samepaged /usr/bin/samepage | grep -E 'not found|/opt/swift|libswift|libFoundation' || true)"
[ -z "$missing" ] || die "the installed binaries need: $missing"
got="$(hidden /usr/sbin/samepaged --version 2>&1)" || die "/usr/sbin/samepaged --version failed: $got"
[ "$got" = "$VERSION" ] || die "/usr/sbin/samepaged --version printed '$got', expected $VERSION"
help="$(hidden /usr/bin/samepage --help 2>&1)" || die "samepage --help failed: $help"
grep -q "USAGE: samepage" <<<"$help" || die "samepage --help printed no usage: $help"
ok "samepaged --version = $got, samepage --help works, with /opt/swift hidden"

# Man pages: found by man, no groff warnings, the package's version, every option of every --help.
for page in samepaged.8 samepage.1; do
    file="/usr/share/man/man${page##*.}/$page.gz"
    [ "$(man -w "${page%.*}" 2>/dev/null | head -n1)" = "$file" ] || die "man -w ${page%.*} does not find $file"
    warnings="$(zcat "$file" | LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z 2>&1)"
    [ -z "$warnings" ] || die "groff warns about $file: $warnings"
    grep -q "^\.TH .*\"Samepage $VERSION\"" <<<"$(zcat "$file")" || die "$file does not say Samepage $VERSION in .TH"
done
check_options() {  # check_options MANPAGE.gz HELP-TEXT
    local page="$1" text="$2" option roff
    while read -r option; do
        roff="${option//-/\\-}"
        grep -qF -- "$roff" <<<"$(zcat "$page")" || die "$page does not document $option"
    done < <(grep -oE -- '--[a-z][a-z-]+' <<<"$text" | sort -u)
}
check_options /usr/share/man/man8/samepaged.8.gz "$(/usr/sbin/samepaged --help)"
check_options /usr/share/man/man1/samepage.1.gz "$(/usr/bin/samepage --help)"
for command in list dominfo stats ksm run tune sharing scan guests "policy show" "policy validate" "policy reload"; do
    # shellcheck disable=SC2086  # "policy show" is two words
    check_options /usr/share/man/man1/samepage.1.gz "$(/usr/bin/samepage help $command)"
    grep -qE "^\.B[I]? \"?${command}( |\"|$)" <<<"$(zcat /usr/share/man/man1/samepage.1.gz)" ||
        die "samepage.1 has no entry for the command '$command'"
done
ok "man pages render without warnings and document every option"

# ---- the unit's capability set, against a stand-in QEMU running as another user ------------------
unit_value() { sed -n "s/^$1=//p" "$UNIT" | tail -n1; }
caps="$(unit_value CapabilityBoundingSet)"
[ -n "$caps" ] || die "$UNIT has no CapabilityBoundingSet="
SETPRIV_CAPS="-all"
for cap in $caps; do
    name="$(tr '[:upper:]' '[:lower:]' <<<"${cap#CAP_}")"
    grep -qx "$name" <<<"$(setpriv --list-caps)" || die "setpriv does not know $cap (from $UNIT)"
    SETPRIV_CAPS="$SETPRIV_CAPS,+$name"
done
[ "$(unit_value NoNewPrivileges)" = yes ] || die "$UNIT does not set NoNewPrivileges=yes"
# As the unit starts samepaged (as far as that can be done without systemd): root with only
# the unit's capabilities, no_new_privs, a clean environment, MemoryDenyWriteExecute=yes as
# PR_SET_MDWE (Linux 6.3+; systemd uses it or a seccomp filter).
cat >"$WORK/as-unit.py" <<'PY'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0 and ctypes.get_errno() != 22:
    sys.exit("prctl(PR_SET_MDWE): " + os.strerror(ctypes.get_errno()))
os.chdir("/")
os.execve("/usr/bin/setpriv", ["setpriv", "--bounding-set=" + os.environ["SETPRIV_CAPS"],
          "--inh-caps=-all", "--no-new-privs", "--"] + sys.argv[1:],
          {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
PY
# A command, not a function, so that `as_unit CMD &` gives CMD's own pid in $! (exec all along).
AS_UNIT=("$PYTHON" "$WORK/as-unit.py")
export SETPRIV_CAPS

QEMU_USER=libvirt-qemu
getent passwd "$QEMU_USER" >/dev/null || QEMU_USER=nobody
SHM="$(mktemp -d /dev/shm/samepage-package-test.XXXXXX)"
chmod 0755 "$SHM"
chown "$QEMU_USER" "$SHM"
# The stand-in: a shared 0600 file in /dev/shm and a memfd, both mapped MAP_SHARED and
# filled (page 0 data, pages 1-7 zero), owned by QEMU_USER; it waits until killed.
setpriv --reuid "$QEMU_USER" --regid "$(id -g "$QEMU_USER")" --clear-groups --inh-caps=-all --bounding-set=-all \
    "$PYTHON" - "$SHM/ram" >"$WORK/standin.out" 2>&1 <<'PY' &
import mmap, os, sys, time
size = 8 * 4096
maps = []
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
for f in (fd, os.memfd_create("samepage-package-test")):
    os.ftruncate(f, size)
    m = mmap.mmap(f, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    m[0:4096] = b"Q" * 4096
    for page in range(1, 8):
        m[page * 4096:(page + 1) * 4096] = bytes(4096)
    maps.append(m)
print("ready", flush=True)
while True:
    time.sleep(60)
PY
STANDIN_PID=$!
for _ in $(seq 50); do grep -q ready "$WORK/standin.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$WORK/standin.out" || die "the stand-in QEMU did not start: $(cat "$WORK/standin.out")"
# What samepaged does to QEMU (Sources/GuestMemory), with only the unit's capabilities.
"${AS_UNIT[@]}" "$PYTHON" - "$STANDIN_PID" "$SHM/ram" "$(id -g "$QEMU_USER")" >"$WORK/capabilities.out" 2>&1 <<'PY' ||
import ctypes, mmap, os, socket, struct, sys
pid, path, gid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
libc = ctypes.CDLL(None, use_errno=True)
def check(what, result):
    if result != 0:
        sys.exit(f"{what}: {os.strerror(ctypes.get_errno())}")
pidfd = libc.syscall(434, pid, 0)                          # pidfd_open
if pidfd < 0:
    sys.exit("pidfd_open: " + os.strerror(ctypes.get_errno()))
lines = open(f"/proc/{pid}/maps").read().splitlines()     # CAP_SYS_PTRACE
regions = [l for l in lines if l.endswith(path) or "memfd:samepage-package-test" in l]
if len(regions) != 2:
    sys.exit(f"expected 2 shared mappings in /proc/{pid}/maps, found {len(regions)}")
pagemap = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)   # CAP_SYS_PTRACE
for line in regions:
    addresses = line.split()[0]
    start = int(addresses.split("-")[0], 16)
    entry, = struct.unpack("<Q", os.pread(pagemap, 8, start // 4096 * 8))
    if not entry >> 63:
        sys.exit(f"pagemap: page at {start:#x} not present")
    # CAP_CHECKPOINT_RESTORE (or CAP_SYS_ADMIN), and CAP_DAC_OVERRIDE for the 0600 file
    fd = os.open(f"/proc/{pid}/map_files/{addresses}", os.O_RDWR)
    if os.pread(fd, 4096, 0) != b"Q" * 4096:
        sys.exit(f"pread {addresses}: wrong content")
    libc.mmap.restype = ctypes.c_void_p
    address = libc.mmap(None, ctypes.c_size_t(8 * 4096), mmap.PROT_READ, mmap.MAP_SHARED, fd, ctypes.c_long(0))
    if address in (None, ctypes.c_void_p(-1).value):
        sys.exit("mmap: " + os.strerror(ctypes.get_errno()))
    vector = (ctypes.c_ubyte * 8)()
    check("mincore", libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(8 * 4096), vector))
    libc.munmap(ctypes.c_void_p(address), ctypes.c_size_t(8 * 4096))
    blocks = os.fstat(fd).st_blocks
    check("fallocate(PUNCH_HOLE)", libc.fallocate(fd, 3, ctypes.c_long(4096), ctypes.c_long(4096)))
    if os.fstat(fd).st_blocks >= blocks:
        sys.exit(f"fallocate(PUNCH_HOLE) on {addresses} freed nothing")
    os.close(fd)
# CAP_SYS_PTRACE: the sockets a process holds (/proc/PID/fd), to tell vhost-user backends apart
if not any(os.readlink(f"/proc/{pid}/fd/{fd}").endswith(os.path.basename(path)) for fd in os.listdir(f"/proc/{pid}/fd")):
    sys.exit(f"/proc/{pid}/fd does not show {path}")
# sock_diag(7): a dump of the Unix sockets (AF_NETLINK, NETLINK_SOCK_DIAG; no capability)
diag = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)
request = struct.pack("=BBHIIIII", socket.AF_UNIX, 0, 0, 0xffffffff, 0, 0x1 | 0x4, 0, 0)  # unix_diag_req: all states, name and peer
diag.sendto(struct.pack("=IHHII", 16 + len(request), 20, 0x1 | 0x300, 1, 0) + request, (0, 0))
reply = diag.recv(65536)
length, kind = struct.unpack("=IH", reply[:6])
if kind != 20:                                              # not SOCK_DIAG_BY_FAMILY: NLMSG_ERROR
    sys.exit(f"sock_diag dump of Unix sockets failed (message type {kind})")
# CAP_CHOWN: the control socket given to control.group
sock = socket.socket(socket.AF_UNIX)
sock.bind(os.path.dirname(path) + "/control.sock")
os.chown(os.path.dirname(path) + "/control.sock", -1, gid)
print("ok")
PY
    die "with the unit's capabilities ($caps), an operation samepaged needs failed: $(cat "$WORK/capabilities.out")"
kill -KILL "$STANDIN_PID" 2>/dev/null || true
wait "$STANDIN_PID" 2>/dev/null || true
STANDIN_PID=""
rm -rf "$SHM"
ok "with only $caps: maps, pagemap, fd, map_files read-write, pread, mincore, hole punch, sock_diag, chown of a socket"

# ---- 4. run the installed samepaged with the packaged configuration -----------------------------
libvirt_answers() { virsh -c qemu:///system version >/dev/null 2>&1; }
if ! libvirt_answers; then
    # It may be restarting (an end-to-end test restarts it): give it a minute.
    log "libvirtd is not answering; waiting up to 60 s"
    for _ in $(seq 60); do libvirt_answers && break; sleep 1; done
fi
if ! libvirt_answers; then
    log "libvirtd is still not answering; starting it with scripts/testhost/setup.sh"
    scripts/testhost/setup.sh || die "scripts/testhost/setup.sh failed"
    libvirt_answers || die "libvirt (qemu:///system) does not answer after scripts/testhost/setup.sh"
fi
wait_for_socket() {
    for _ in $(seq 200); do
        [ -S "$SOCKET" ] && return 0
        [ -z "$DAEMON_PID" ] || kill -0 "$DAEMON_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
stats_json() { /usr/bin/samepage stats --json; }
json_field() { "$PYTHON" -c 'import json,sys; v=json.load(sys.stdin)[sys.argv[1]]; print(str(v).lower() if isinstance(v,bool) else v)' "$1"; }
check_daemon() {
    local out connected=false
    out="$(/usr/bin/samepage stats)" || die "samepage stats on $SOCKET failed: $out"
    grep -q "^run  *merge$" <<<"$out" || die "samepage stats: run is not merge (the packaged scan.run): $out"
    [ "$(stats_json | json_field run)" = 1 ] || die "samepage stats --json: run is not 1 (merge): $(stats_json)"
    for _ in $(seq 100); do
        [ "$(stats_json | json_field connected)" = true ] && { connected=true; break; }
        sleep 0.1
    done
    [ "$connected" = true ] || die "samepaged is not connected to libvirt: $(/usr/bin/samepage stats)"
    [ "$(stats_json | json_field guests_mapped)" = 0 ] ||
        die "samepaged mapped a guest under the packaged policy (mode off): $(/usr/bin/samepage list)"
    /usr/bin/samepage list >/dev/null || die "samepage list failed"
    [ -n "$METRICS" ] || return 0
    out="$("$PYTHON" - "$METRICS" <<'PY'
import sys, urllib.request
print(urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=5).read().decode())
PY
)" || die "GET http://$METRICS/metrics failed"
    grep -q "^samepage_build_info{version=\"$VERSION\"} 1" <<<"$out" ||
        die "http://$METRICS/metrics has no samepage_build_info for $VERSION: $(head -c 600 <<<"$out")"
    grep -q "^samepage_guests_mapped 0" <<<"$out" || die "http://$METRICS/metrics: samepage_guests_mapped is not 0"
}

if [ -d /run/systemd/system ]; then
    log "systemd is PID 1: systemctl start $SERVICE"
    systemctl daemon-reload
    systemctl start "$SERVICE" || die "systemctl start $SERVICE failed: $(systemctl status "$SERVICE" 2>&1)"
    wait_for_socket || die "$SOCKET did not appear: $(systemctl status "$SERVICE" 2>&1)"
    check_daemon
    systemctl reload "$SERVICE" || die "systemctl reload failed"
    sleep 1
    systemctl is-active --quiet "$SERVICE" || die "$SERVICE died on reload: $(systemctl status "$SERVICE" 2>&1)"
    check_daemon
    systemctl stop "$SERVICE" || die "systemctl stop $SERVICE failed"
    result="$(systemctl show -p Result --value "$SERVICE")"
    [ "$result" = success ] || die "$SERVICE stopped with result $result: $(systemctl status "$SERVICE" 2>&1)"
    [ ! -e "$SOCKET" ] || die "$SOCKET still exists after stop"
    ok "systemctl start, samepage stats, reload, stop: result success"
else
    log "systemd is not PID 1: starting /usr/sbin/samepaged as the unit would (see --help)"
    exec_start="$(unit_value ExecStart)"
    [ "$exec_start" = /usr/sbin/samepaged ] || die "unexpected ExecStart=$exec_start in $UNIT"
    "${AS_UNIT[@]}" /usr/sbin/samepaged </dev/null >"$WORK/samepaged.log" 2>&1 &
    DAEMON_PID=$!
    wait_for_socket || die "samepaged did not create $SOCKET: $(tail -n 20 "$WORK/samepaged.log")"
    [ "$(cat "/proc/$DAEMON_PID/comm" 2>/dev/null)" = samepaged ] || die "pid $DAEMON_PID is not samepaged"
    check_daemon
    ok "samepaged answers samepage stats on $SOCKET, connected to libvirt, no guest mapped; metrics on ${METRICS:-(disabled)}"
    kill -HUP "$DAEMON_PID"
    sleep 1
    kill -0 "$DAEMON_PID" 2>/dev/null || die "samepaged died on SIGHUP: $(tail -n 20 "$WORK/samepaged.log")"
    grep -q "SIGHUP" "$WORK/samepaged.log" || die "samepaged did not log the SIGHUP reload"
    check_daemon
    ok "SIGHUP reloads"
    kill -TERM "$DAEMON_PID"
    rc=0
    for _ in $(seq 300); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$DAEMON_PID" 2>/dev/null && die "samepaged did not exit within 30 s of SIGTERM"
    wait "$DAEMON_PID" || rc=$?
    DAEMON_PID=""
    [ "$rc" -eq 0 ] || die "samepaged exited with status $rc after SIGTERM: $(tail -n 20 "$WORK/samepaged.log")"
    [ ! -e "$SOCKET" ] || die "$SOCKET still exists after samepaged stopped"
    ok "SIGTERM: exit status 0, socket removed"
    stop_post="$(unit_value ExecStopPost)"
    [ "$stop_post" = "/usr/sbin/samepaged --resume-paused" ] || die "unexpected ExecStopPost=$stop_post in $UNIT"
    # shellcheck disable=SC2086  # the command line of the unit, split as systemd does
    out="$("${AS_UNIT[@]}" $stop_post 2>&1)" || die "ExecStopPost ($stop_post) failed: $out"
    ok "ExecStopPost ($stop_post) exits 0"
fi

# ---- 4b. upgrade (the same package over itself: postinst configure with the old version) --------
echo "# an admin's line" >>"$CONFFILE"
touch "$STATE_DIR/upgrade-marker"
log "dpkg -i $(basename "$DEB") again (upgrade)"
dpkg -i "$DEB" >"$WORK/dpkg-upgrade.log" 2>&1 || { cat "$WORK/dpkg-upgrade.log" >&2; die "the upgrade (dpkg -i over the installed package) failed"; }
[ "$(package_status)" = installed ] || die "after the upgrade, status is $(package_status)"
grep -qx "# an admin's line" "$CONFFILE" || die "the upgrade lost the admin's change to $CONFFILE"
[ -e "$STATE_DIR/upgrade-marker" ] || die "the upgrade emptied $STATE_DIR (the journal and what was punched live there)"
rm -f "$STATE_DIR/upgrade-marker"
ok "upgrade: installed, the admin's $CONFFILE and $STATE_DIR kept"

# ---- 5. remove, purge ----------------------------------------------------------------------------
log "dpkg -r samepage"
dpkg -r samepage >"$WORK/dpkg-remove.log" 2>&1 || { cat "$WORK/dpkg-remove.log" >&2; die "dpkg -r samepage failed"; }
[ "$(package_status)" = config-files ] || die "after dpkg -r, status is $(package_status), not config-files"
for f in /usr/sbin/samepaged /usr/bin/samepage "$UNIT" /usr/share/man/man8/samepaged.8.gz /usr/share/doc/samepage/README.md \
         /usr/share/samepage; do
    [ ! -e "$f" ] || die "$f still exists after dpkg -r"
done
[ -f "$CONFFILE" ] || die "$CONFFILE was removed by dpkg -r (a conffile must stay until purge)"
ok "dpkg -r: binaries, unit and docs gone, $CONFFILE kept"

log "dpkg -P samepage"
dpkg -P samepage >"$WORK/dpkg-purge.log" 2>&1 || { cat "$WORK/dpkg-purge.log" >&2; die "dpkg -P samepage failed"; }
status="$(package_status)"
[ -z "$status" ] || [ "$status" = not-installed ] || die "after dpkg -P, status is $status"
for f in /etc/samepage "$STATE_DIR" /etc/systemd/system/multi-user.target.wants/$SERVICE /etc/systemd/system/$SERVICE; do
    { [ ! -e "$f" ] && [ ! -L "$f" ]; } || die "$f still exists after dpkg -P"
done
ok "dpkg -P: /etc/samepage, $STATE_DIR and the unit's enablement gone"
log "PASSED ($(basename "$DEB"))"
