#!/usr/bin/env bash
# Usage: packaging/build-deb.sh [--configuration release|debug] [--output DIR]
#                               [--scratch-path DIR]
#
# Builds the Debian package of Samepage, samepage_VERSION_ARCH.deb, in DIR (default:
# the scratch path), and prints its path on standard output:
#   1. builds samepaged and samepage with `swift build -c CONFIGURATION
#      --static-swift-stdlib --disable-local-rpath` (release by default) in their own
#      scratch path (default .build-package, so that the flags do not make the developer's
#      .build rebuild), and checks that they need nothing from the Swift toolchain at run
#      time: no libswift*/Foundation/dispatch library, no RPATH/RUNPATH;
#   2. takes the version from `samepaged --version`; packaging/debian/changelog must have
#      an entry for it (VERSION-REVISION), whose version becomes the package's;
#   3. lays out the package: /usr/sbin/samepaged, /usr/bin/samepage (stripped),
#      /lib/systemd/system/samepaged.service, /etc/samepage/samepaged.toml, web.yml.sample and
#      /etc/samepage/guests.d/*.sample (conffiles), the man pages samepaged(8) and
#      samepage(1) from packaging/man, bash/zsh/fish completions from config/completions,
#      /usr/share/doc/samepage/{README.md,control-protocol.md,copyright,changelog.Debian.gz},
#      the Prometheus rules /usr/share/samepage/prometheus/samepage-rules.yml (from
#      packaging/prometheus), the Grafana dashboard
#      /usr/share/samepage/grafana/samepage-dashboard.json (from packaging/grafana), and the
#      maintainer scripts in packaging/debian;
#   4. derives Depends: from the binaries with dpkg-shlibdeps and builds the package with
#      `dpkg-deb --root-owner-group --build`.
# Needs swift (/opt/swift/usr/bin is added to PATH), dpkg-dev and binutils. Any user;
# nothing is installed. File times are those of the last commit (SOURCE_DATE_EPOCH).
set -euo pipefail

PROG="$(basename "$0")"
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CONFIGURATION=release
OUTPUT=""
SCRATCH="$ROOT/.build-package"

while [ $# -gt 0 ]; do
    case "$1" in
    --configuration|-c)
        [ $# -ge 2 ] || die "$1 needs a value (release or debug)"
        CONFIGURATION="$2"; shift 2 ;;
    --output|-o)
        [ $# -ge 2 ] || die "$1 needs a directory"
        OUTPUT="$2"; shift 2 ;;
    --scratch-path)
        [ $# -ge 2 ] || die "$1 needs a directory"
        SCRATCH="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see $PROG --help)" ;;
    esac
done
case "$CONFIGURATION" in
release|debug) ;;
*) die "--configuration must be release or debug, not '$CONFIGURATION'" ;;
esac
mkdir -p "$SCRATCH"
SCRATCH="$(cd "$SCRATCH" && pwd)"
OUTPUT="${OUTPUT:-$SCRATCH}"
mkdir -p "$OUTPUT" || die "cannot create the output directory $OUTPUT"
OUTPUT="$(cd "$OUTPUT" && pwd)"

command -v swift >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"
for tool in swift dpkg-deb dpkg-shlibdeps dpkg-parsechangelog dpkg-architecture strip readelf ldd gzip md5sum; do
    command -v "$tool" >/dev/null || die "'$tool' not found (swift: /opt/swift/usr/bin; dpkg-*: apt-get install dpkg-dev; strip, readelf: binutils)"
done

cd "$ROOT"
umask 022
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"

# ---- 1. build ------------------------------------------------------------------------------
# -z now with the relro Swift already links with: the whole GOT read-only (lintian's bindnow).
BUILD_FLAGS=(-c "$CONFIGURATION" --scratch-path "$SCRATCH" --static-swift-stdlib --disable-local-rpath
             -Xlinker -z -Xlinker now)
for product in samepaged samepage; do
    log "building $product ($CONFIGURATION, Swift standard library linked in) in $SCRATCH"
    swift build "${BUILD_FLAGS[@]}" --product "$product" >"$SCRATCH/build-$product.log" 2>&1 ||
        { tail -n 30 "$SCRATCH/build-$product.log" >&2; die "swift build of $product failed (log: $SCRATCH/build-$product.log)"; }
done
BIN="$(swift build "${BUILD_FLAGS[@]}" --show-bin-path)"
for product in samepaged samepage; do
    [ -x "$BIN/$product" ] || die "$BIN/$product was not built"
    libs="$(ldd "$BIN/$product")" || die "ldd $BIN/$product failed"
    if grep -E 'not found|/opt/swift|libswift|libFoundation|libdispatch|libBlocksRuntime|lib_FoundationICU' <<<"$libs" >&2; then
        die "$product still needs the libraries above at run time (expected only system libraries)"
    fi
    if readelf -d "$BIN/$product" | grep -E 'RPATH|RUNPATH' >&2; then
        die "$product has an RPATH/RUNPATH (built without --disable-local-rpath?)"
    fi
done

# ---- 2. version ----------------------------------------------------------------------------
VERSION="$("$BIN/samepaged" --version)" || die "$BIN/samepaged --version failed"
[[ "$VERSION" =~ ^[0-9][0-9A-Za-z.+~]*$ ]] || die "samepaged --version printed '$VERSION', not a version"
CHANGELOG="$ROOT/packaging/debian/changelog"
DEB_VERSION="$(dpkg-parsechangelog -l "$CHANGELOG" -S Version)" || die "cannot parse $CHANGELOG"
[ "${DEB_VERSION%-*}" = "$VERSION" ] ||
    die "samepaged is version $VERSION but the latest entry of packaging/debian/changelog is $DEB_VERSION; add an entry for $VERSION-1"
MAINTAINER="$(dpkg-parsechangelog -l "$CHANGELOG" -S Maintainer)"
ARCH="$(dpkg-architecture -qDEB_HOST_ARCH)"
DEB="$OUTPUT/samepage_${DEB_VERSION}_${ARCH}.deb"

# ---- 3. lay out ----------------------------------------------------------------------------
WORK="$(mktemp -d "$SCRATCH/deb-work.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
# dpkg-shlibdeps expects debian/control and the package tree under debian/PACKAGE.
PKG="$WORK/debian/samepage"
mkdir -p "$PKG/DEBIAN"

install -D -m 0755 "$BIN/samepaged" "$PKG/usr/sbin/samepaged"
install -D -m 0755 "$BIN/samepage" "$PKG/usr/bin/samepage"
strip --remove-section=.comment --remove-section=.note "$PKG/usr/sbin/samepaged" "$PKG/usr/bin/samepage"
install -D -m 0644 packaging/samepaged.service "$PKG/lib/systemd/system/samepaged.service"

install -D -m 0644 config/samepaged.toml "$PKG/etc/samepage/samepaged.toml"
install -m 0644 config/web.yml.sample "$PKG/etc/samepage/web.yml.sample"
install -d -m 0755 "$PKG/etc/samepage/guests.d"
samples=(config/guests.d/*.sample)
[ -e "${samples[0]}" ] || die "no config/guests.d/*.sample files"
install -m 0644 "${samples[@]}" "$PKG/etc/samepage/guests.d/"

# Man pages: the committed ones, with samepaged's version in the .TH line.
for page in samepaged.8 samepage.1; do
    section="${page##*.}"
    src="packaging/man/$page"
    [ -f "$src" ] || die "$src is missing"
    install -d -m 0755 "$PKG/usr/share/man/man$section"
    sed -E "1,/^\\.TH /s/^(\\.TH [^ ]+ [0-9]+ \"[^\"]*\") \"Samepage [^\"]*\"/\\1 \"Samepage $VERSION\"/" "$src" |
        gzip -9n >"$PKG/usr/share/man/man$section/$page.gz"
done

# The bash script is sourced, not run: without the #! line argument-parser writes.
if [ -f config/completions/samepage.bash ]; then
    install -d -m 0755 "$PKG/usr/share/bash-completion/completions"
    sed '1{/^#!/d}' config/completions/samepage.bash >"$PKG/usr/share/bash-completion/completions/samepage"
fi
[ -f config/completions/samepage.zsh ] &&
    install -D -m 0644 config/completions/samepage.zsh "$PKG/usr/share/zsh/vendor-completions/_samepage"
[ -f config/completions/samepage.fish ] &&
    install -D -m 0644 config/completions/samepage.fish "$PKG/usr/share/fish/vendor_completions.d/samepage.fish"

DOC="$PKG/usr/share/doc/samepage"
install -D -m 0644 README.md "$DOC/README.md"
[ -f docs/control-protocol.md ] && install -m 0644 docs/control-protocol.md "$DOC/control-protocol.md"
install -m 0644 packaging/debian/copyright "$DOC/copyright"
gzip -9n <"$CHANGELOG" >"$DOC/changelog.Debian.gz"
install -D -m 0644 packaging/debian/lintian-overrides "$PKG/usr/share/lintian/overrides/samepage"
# Recording and alerting rules for Prometheus's rule_files (not a conffile: a copy is edited).
install -D -m 0644 packaging/prometheus/samepage-rules.yml "$PKG/usr/share/samepage/prometheus/samepage-rules.yml"
install -D -m 0644 packaging/grafana/samepage-dashboard.json "$PKG/usr/share/samepage/grafana/samepage-dashboard.json"

# ---- 4. control files ------------------------------------------------------------------------
for script in postinst prerm postrm; do
    install -m 0755 "packaging/debian/$script" "$PKG/DEBIAN/$script"
done
(cd "$PKG" && find etc -type f | sort | sed 's|^|/|') >"$PKG/DEBIAN/conffiles"
chmod 0644 "$PKG/DEBIAN/conffiles"

printf 'Source: samepage\n\nPackage: samepage\nArchitecture: any\n' >"$WORK/debian/control"
DEPENDS="$(cd "$WORK" && dpkg-shlibdeps -O debian/samepage/usr/sbin/samepaged debian/samepage/usr/bin/samepage)" ||
    die "dpkg-shlibdeps failed"
DEPENDS="${DEPENDS#shlibs:Depends=}"
[ -n "$DEPENDS" ] || die "dpkg-shlibdeps found no dependencies"
rm -f "$WORK/debian/control"

INSTALLED_SIZE="$(du -sk --exclude=DEBIAN "$PKG" | cut -f1)"
sed -e "s|@VERSION@|$DEB_VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@MAINTAINER@|$MAINTAINER|" \
    -e "s|@INSTALLED_SIZE@|$INSTALLED_SIZE|" -e "s|@DEPENDS@|$DEPENDS|" \
    packaging/debian/control.in >"$PKG/DEBIAN/control"
grep -q '@[A-Z_]*@' "$PKG/DEBIAN/control" && die "unreplaced placeholder in DEBIAN/control"

# md5sums of every file but the conffiles (dpkg keeps theirs itself), as dh_md5sums does.
(cd "$PKG" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print | sed 's|^\./||' |
    LC_ALL=C sort | xargs md5sum) >"$PKG/DEBIAN/md5sums"
chmod 0644 "$PKG/DEBIAN/md5sums"

find "$PKG" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
rm -f "$DEB"
dpkg-deb --root-owner-group -Zxz --build "$PKG" "$DEB" >&2 || die "dpkg-deb --build failed"
log "built $DEB ($(du -h "$DEB" | cut -f1); Depends: $DEPENDS)"
printf '%s\n' "$DEB"
