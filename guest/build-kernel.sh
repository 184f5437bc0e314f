#!/usr/bin/env bash
# Build Vireo's tiny Linux 6.1 test guest kernel (vmlinux with a PVH entry note, plus an LZ4 bzImage)
# from Debian's linux-source-6.1: the project's patches (guest/patches/*.patch, applied in name order),
# `make tinyconfig`, then guest/kernel.config merged on top.
#
# Output is cached outside the repository in
#   ${VIREO_CACHE:-$HOME/.cache/vireo}/kernel-<sha256 of (kernel.config, patches/*.patch, this script,
#   linux-source-6.1 version)>/
# holding vmlinux, bzImage, config, System.map and build-info.
# The directory path is the LAST line on stdout; everything else goes to stderr:
#   dir=$(guest/build-kernel.sh | tail -1)
#
# Environment:
#   VIREO_CACHE       cache root (default $HOME/.cache/vireo)
#   VIREO_JOBS        make -j value (default 2: the build machines are shared 2-core hosts)
#   VIREO_KEEP_BUILD  set to 1 to keep the build tree after the build (its path is logged)
#
# The throw-away source/build tree (~1.5 GiB) lives next to the cache entry, in
# $VIREO_CACHE/.kernel-<hash>.tmp.XXXXXX/{linux-source-6.1,out}; out/ is renamed to kernel-<hash>/ only once
# complete, so an interrupted build never leaves a half-written cache entry.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$here/$(basename "${BASH_SOURCE[0]}")"
fragment="$here/kernel.config"
patches=("$here"/patches/*.patch)
cache_root=${VIREO_CACHE:-$HOME/.cache/vireo}
jobs=${VIREO_JOBS:-2}

log() { printf 'build-kernel: %s\n' "$*" >&2; }
die() { printf 'build-kernel: ERROR: %s\n' "$*" >&2; exit 1; }

[ -f "$fragment" ] || die "missing $fragment"

# ---------------------------------------------------------------------------------------------
# Dependencies (installed only when something is missing).
deps=(linux-source-6.1 build-essential bc bison flex libelf-dev libssl-dev cpio xz-utils lz4 patch)

pkg_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]
}

ensure_deps() {
    local missing=() p
    for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing missing Debian packages: ${missing[*]}"
    [ "$(id -u)" -eq 0 ] || die "need root to apt-get install: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
}

# The cache key needs the linux-source version, so that package must exist before anything else.
pkg_installed linux-source-6.1 || ensure_deps linux-source-6.1
src_version=$(dpkg-query -W -f='${Version}' linux-source-6.1)

key=$( {
    printf 'linux-source-6.1 %s\n' "$src_version"
    printf -- '--- kernel.config\n'; cat "$fragment"
    for p in "${patches[@]}"; do printf -- '--- %s\n' "$(basename "$p")"; cat "$p"; done
    printf -- '--- build-kernel.sh\n'; cat "$self"
} | sha256sum | cut -c1-64)
out="$cache_root/kernel-$key"

if [ -f "$out/vmlinux" ]; then
    echo "$out"
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# Cache miss: build. Serialise concurrent builds of the same key on a lock file.
mkdir -p "$cache_root"
exec 9>"$cache_root/.kernel-$key.lock"
if ! flock -n 9; then
    log "another build of kernel-$key is running; waiting for it"
    flock 9
fi
if [ -f "$out/vmlinux" ]; then   # built by whoever held the lock
    echo "$out"
    exit 0
fi

# Debris of a build of this key that was killed outright (SIGKILL, power loss): safe to remove
# now that we hold the lock.
rm -rf "$cache_root/.kernel-$key.tmp."*

ensure_deps "${deps[@]}"

tarball=/usr/src/linux-source-6.1.tar.xz
[ -f "$tarball" ] || die "$tarball not found (is linux-source-6.1 installed correctly?)"

work=$(mktemp -d "$cache_root/.kernel-$key.tmp.XXXXXX")
stage="$work/out"
mkdir "$stage"
cleanup() {
    if [ "${VIREO_KEEP_BUILD:-0}" = 1 ]; then
        rm -rf "$stage"
        log "keeping build tree $work/linux-source-6.1"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start=$(date +%s)
log "cache miss: building kernel-$key (linux-source-6.1 $src_version) in $work"
log "extracting $tarball"
tar -xJf "$tarball" -C "$work"
src="$work/linux-source-6.1"
[ -d "$src" ] || die "unexpected tarball layout (no linux-source-6.1/ directory)"
for p in "${patches[@]}"; do
    log "applying $(basename "$p")"
    patch -p1 -s --forward -d "$src" < "$p" >&2 || die "$(basename "$p") does not apply to linux-source-6.1 $src_version"
done

kmake() { make -C "$src" ARCH=x86_64 "$@"; }
# The full make output goes to a log next to the cache entry; stderr gets a progress line every
# 200 compiled files (a build compiles ~1,400).
mkdir -p "$cache_root/logs"
build_log="$cache_root/logs/kernel-$key.log"
: > "$build_log"
quiet() {   # quiet WHAT CMD...: run CMD with its output in the log, say what it is doing
    local what=$1; shift
    log "$what (full output: $build_log)"
    if ! "$@" >>"$build_log" 2>&1; then
        tail -n 30 "$build_log" >&2
        die "$what failed; the last lines are above, the whole output is in $build_log"
    fi
}
progress() {   # reads make output, writes it to the log, prints a line per 200 files compiled
    local n=0 t0 line
    t0=$(date +%s)
    while IFS= read -r line; do
        printf '%s\n' "$line" >>"$build_log"
        case "$line" in
            "  CC "*|"  AS "*) n=$((n + 1))
                [ $((n % 200)) -eq 0 ] && log "compiling: $n files, $(( $(date +%s) - t0 )) s" ;;
        esac
    done
}

log "configuring: tinyconfig + $(basename "$fragment")"
quiet "make tinyconfig" kmake tinyconfig
quiet "merging $(basename "$fragment")" "$src/scripts/kconfig/merge_config.sh" -m -O "$src" "$src/.config" "$fragment"
quiet "make olddefconfig" kmake olddefconfig

# Every line of the fragment must survive olddefconfig unchanged: a symbol silently dropped
# because of an unmet dependency (or flipped on by a default) is a hard error, not a warning.
check_config() {
    local config=$1 bad=0 line sym want got
    while IFS= read -r line; do
        case "$line" in
            CONFIG_*=*)
                sym=${line%%=*}; want=${line#*=} ;;
            "# CONFIG_"*" is not set")
                sym=${line#\# }; sym=${sym%% *}; want=n ;;
            *) continue ;;
        esac
        got=$(grep -E "^${sym}=" "$config" | head -1 | cut -d= -f2- || true)
        [ -n "$got" ] || got=n
        if [ "$got" != "$want" ]; then
            printf 'build-kernel: CONFIG MISMATCH: %s wanted %s, got %s\n' "$sym" "$want" "$got" >&2
            bad=1
        fi
    done < "$fragment"
    return $bad
}
check_config "$src/.config" || die "the resolved .config does not match $fragment (see mismatches above)"
log "config check passed: every symbol in $(basename "$fragment") has its requested value"

log "building vmlinux and bzImage with make -j$jobs"
set +e
kmake -j"$jobs" vmlinux bzImage 2>&1 | progress
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
    grep -E 'error|Error' "$build_log" | tail -n 20 >&2
    die "make vmlinux bzImage failed (exit $status); the whole output is in $build_log"
fi

cp "$src/vmlinux" "$stage/vmlinux"
cp "$src/arch/x86/boot/bzImage" "$stage/bzImage"
cp "$src/.config" "$stage/config"
cp "$src/System.map" "$stage/System.map"
end=$(date +%s)
{
    printf 'linux-source-6.1 %s\n' "$src_version"
    printf 'kernelrelease %s\n' "$(kmake -s kernelrelease 2>/dev/null)"
    printf 'compiler %s\n' "$(gcc --version | head -1)"
    printf 'build-seconds %s\n' "$((end - start))"
    printf 'built %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} > "$stage/build-info"
chmod 0755 "$stage"

# Atomic publish: rename the complete staging directory into place (we hold the lock, so a
# leftover $out without vmlinux can only be debris from something else: replace it).
[ -e "$out" ] && rm -rf "$out"
mv -T "$stage" "$out"
log "built in $((end - start)) s: $out"
echo "$out"
