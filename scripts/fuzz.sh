#!/usr/bin/env bash
# Usage: scripts/fuzz.sh [--seconds N] [--list] [target...]
#
# Builds Samepage's fuzz targets (Fuzz/targets/NAME.swift) with libFuzzer and AddressSanitizer
# (`swiftc -sanitize=fuzzer,address`), replays every input kept under Fuzz/regressions/NAME/,
# then fuzzes each target for N seconds (default 30) from its seed corpus Fuzz/corpus/NAME/.
# Prints each target's executions, exec/s, coverage and corpus size; exits non-zero if any
# target crashes, leaks, hangs or fails to build. Crashers land in .build-fuzz/artifacts/NAME/:
# keep each under Fuzz/regressions/NAME/ once fixed.
#
# A target is its module's sources compiled together with the harness, so internal parsers
# are reachable and instrumented; the modules it depends on are linked from SwiftPM's debug
# build (`swift build --target` for each, run here first unless SAMEPAGE_FUZZ_DEPS names a
# build directory that has them, as `swift build --show-bin-path` prints it).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v swiftc >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"

seconds=30
list=false
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --list) list=true; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done

all_targets=()
for file in Fuzz/targets/*.swift; do all_targets+=("$(basename "$file" .swift)"); done
if $list; then printf '%s\n' "${all_targets[@]}"; exit 0; fi
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")

# What each target compiles from source (MODULE: all of Sources/MODULE, or FILES), which
# built modules it links (DEPS, dependencies first is not required), which C modules it
# imports (CMODULES), system libraries (LIBS), and libFuzzer's -max_len.
spec() {
    FILES=() DEPS=() CMODULES=() LIBS=() MAXLEN=4096 LEAKS=1 BUILD=() ASAN_EXTRA= FORK=0
    case "$1" in
        qmp_message|qmp_stream)
            MODULE=QMP DEPS=(LinuxSystem SystemPackage CSystem CLinux) CMODULES=(CSystem CLinux) BUILD=(LinuxSystem)
            if [ "$1" = qmp_stream ]; then MAXLEN=65536; fi ;;
        proc_files)
            MODULE=GuestMemory DEPS=(SamepageCore LinuxSystem SystemPackage CSystem CLinux) BUILD=(GuestMemory)
            CMODULES=(CSystem CLinux CXXHash) LIBS=(-lxxhash) MAXLEN=16384 ;;
        qemu_guest)
            MODULE=QEMUGuests DEPS=(GuestMemory SamepageCore LinuxSystem SystemPackage CSystem CLinux) BUILD=(GuestMemory)
            CMODULES=(CSystem CLinux CXXHash) LIBS=(-lxxhash) MAXLEN=16384 ;;
        domain_xml)
            # The XML reading only: the rest of the module is libvirt's C API.
            # FoundationXML leaks every document it reads, parsed or not (docs/FUZZING.md): no
            # leak detection, a small quarantine, and libFuzzer's fork mode, whose short-lived
            # workers return the leaked memory before it reaches the RSS limit.
            MODULE=Libvirt FILES=(Sources/Libvirt/DomainDefinition{,+XML}.swift) MAXLEN=16384
            LEAKS=0 ASAN_EXTRA=:quarantine_size_mb=1 FORK=1 ;;
        control_request)
            # The codec and its types, without the server (ServiceLifecycle) and the client.
            MODULE=SamepageControl FILES=(Sources/SamepageControl/{ControlCodec,ControlRequest,ControlResponse,ControlError,KernelKSMChanges,Release,WireCoding}.swift)
            DEPS=(SamepageModel SamepageCore LinuxSystem SystemPackage CSystem CLinux) CMODULES=(CSystem CLinux CXXHash) LIBS=(-lxxhash)
            BUILD=(SamepageModel LinuxSystem) ;;
        config_toml|web_config_yaml)
            # TOMLKit leaks on every parse (Fuzz/lsan.supp); checking each new input for leaks,
            # suppressed or not, slows the target a hundredfold: no leak detection here. The
            # module reads the web configuration's YAML too (Yams, over libyaml's CYaml).
            MODULE=SamepageConfig DEPS=(SamepageModel SamepageCore TOMLKit CTOML Yams CYaml) BUILD=(SamepageConfig) LEAKS=0
            CMODULES=(CTOML CXXHash CYaml) LIBS=(-lxxhash -lstdc++) MAXLEN=8192 ;;
        basic_auth)
            # The Authorization header's reading and bcrypt check, without the server (NIO).
            MODULE=SamepageMetrics FILES=(Sources/SamepageMetrics/{BasicAuthenticator,Bcrypt,CredentialCache}.swift)
            CMODULES=(CCrypt) LIBS=(-lcrypt -lcrypto) MAXLEN=1024 ;;
        *) echo "fuzz.sh: no build recipe for target $1 (add it to spec in $0)" >&2; return 1 ;;
    esac
}

out=.build-fuzz
mkdir -p "$out/bin" "$out/artifacts"

if [ -z "${SAMEPAGE_FUZZ_DEPS:-}" ]; then
    # The SwiftPM targets whose builds hold every module the targets link.
    needed=()
    for name in "${targets[@]}"; do
        spec "$name"
        needed+=("${BUILD[@]}")
    done
    for target in $(printf '%s\n' "${needed[@]}" | sort -u); do
        swift build --target "$target" >&2
    done
    SAMEPAGE_FUZZ_DEPS=$(swift build --show-bin-path)
fi
deps=$(realpath "$SAMEPAGE_FUZZ_DEPS")
checkouts=$(realpath "$deps/../../checkouts")
# Samepage's own modules' package name (SwiftPM's, from the checkout's directory name), for
# `package` declarations of the modules linked.
package_name=$(grep '"-module-name","SamepageCore"' "$deps/../../debug.yaml" | grep -o '"-package-name","[^"]*"' | head -1 | cut -d'"' -f4)

# The module map of C module $1, as SwiftPM finds it.
module_map() {
    local candidate
    for candidate in "$deps/$1.build/module.modulemap" "Sources/$1/module.modulemap" \
        "$checkouts"/*/Sources/"$1"/include/module.modulemap; do
        [ -f "$candidate" ] && { echo "$candidate"; return; }
    done
    echo "fuzz.sh: no module map for $1" >&2
    return 1
}

build() {
    local name=$1 binary="$out/bin/$1"
    spec "$name" || return 1
    local sources=("${FILES[@]}")
    [ ${#sources[@]} -gt 0 ] || sources=(Sources/"$MODULE"/*.swift)
    local objects=() flags=() dep cmodule
    for dep in "${DEPS[@]}"; do
        while IFS= read -r -d '' object; do objects+=("$object"); done < <(find "$deps/$dep.build" -name '*.o' -print0)
    done
    for cmodule in "${CMODULES[@]}"; do
        flags+=(-Xcc "-fmodule-map-file=$(module_map "$cmodule")")
        for include in "$checkouts"/*/Sources/"$cmodule"/include; do
            [ -d "$include" ] && flags+=(-Xcc -I -Xcc "$include")
        done
    done
    # Rebuilt only when the harness, the module's sources or the linked objects are newer.
    if [ -x "$binary" ] && [ -z "$(find "Fuzz/targets/$name.swift" "${sources[@]}" "${objects[@]}" -newer "$binary" -print -quit)" ]; then
        return 0
    fi
    echo "== build $name ($MODULE + ${#objects[@]} objects)" >&2
    swiftc -module-name "$MODULE" -package-name "$package_name" -parse-as-library -swift-version 6 \
        -sanitize=fuzzer,address -Onone -g -j2 -I "$deps/Modules" "${flags[@]}" \
        "${sources[@]}" "Fuzz/targets/$name.swift" "${objects[@]}" "${LIBS[@]}" -o "$binary" \
        2> >(grep -v "Cannot export local symbol '__asan" >&2)
}

status=0
summary=()
for name in "${targets[@]}"; do
    if ! build "$name"; then
        summary+=("$(printf '%-20s BUILD FAILED' "$name")"); status=1; continue
    fi
    spec "$name"
    binary="$out/bin/$name"
    options=(-rss_limit_mb=2048 -timeout=10 -max_len="$MAXLEN" -print_final_stats=1 -detect_leaks=$LEAKS)
    export ASAN_OPTIONS="detect_leaks=$LEAKS$ASAN_EXTRA"
    export LSAN_OPTIONS="suppressions=$PWD/Fuzz/lsan.supp:print_suppressions=0"
    fuzzing=(-max_total_time="$seconds" -artifact_prefix="$out/artifacts/$name/")
    if [ "$FORK" = 1 ]; then
        fuzzing+=(-fork=1 -ignore_crashes=0 -ignore_ooms=0 -ignore_timeouts=0)
    fi

    # Every input that ever crashed this target, first.
    if compgen -G "Fuzz/regressions/$name/*" >/dev/null; then
        if ! "$binary" "${options[@]}" Fuzz/regressions/"$name"/* >"$out/$name.regressions.log" 2>&1; then
            tail -n 40 "$out/$name.regressions.log" >&2
            summary+=("$(printf '%-20s REGRESSION (see %s)' "$name" "$out/$name.regressions.log")"); status=1; continue
        fi
    fi

    # A scratch copy of the seeds grows during the run; the seeds in the repository do not.
    corpus="$out/corpus/$name"
    mkdir -p "$corpus" "$out/artifacts/$name"
    cp -n Fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null || true
    log="$out/$name.log"
    echo "== fuzz $name for ${seconds}s" >&2
    if "$binary" "${options[@]}" "${fuzzing[@]}" "$corpus" >"$log" 2>&1; then
        result=ok
    else
        result="CRASH (see $log, input in $out/artifacts/$name/)"
        tail -n 40 "$log" >&2
        status=1
    fi
    # libFuzzer's last status line (`#RUNS cov: … ft: … corp: UNITS/SIZE … exec/s: N`, in
    # fork mode `#RUNS: cov: … corp: UNITS exec/s: N …`) and its final statistics.
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' \
        || grep -o '^#[0-9]*' <<<"$last" | tr -d '#' || echo '?')
    speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' \
        || grep -o 'exec/s: [0-9]*' <<<"$last" | grep -o '[0-9]*' || echo '?')
    cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*' || echo '?')
    ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*' || echo '?')
    units=$(grep -o 'corp: [0-9]*[0-9/a-zA-Z]*' <<<"$last" | cut -d' ' -f2 || echo '?')
    summary+=("$(printf '%-20s %10s runs %8s exec/s  cov %5s  ft %6s  corpus %-12s %s' \
        "$name" "$runs" "$speed" "$cov" "$ft" "$units" "$result")")
done

printf '%s\n' "${summary[@]}"
exit $status
