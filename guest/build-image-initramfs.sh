#!/usr/bin/env bash
# Build the initramfs `vireo run --image` boots: an UNCOMPRESSED newc cpio holding only
# guest/image-init.c (with image-setup.c) compiled (musl-gcc -static, else gcc -static) as /init, a /dev/console node and the empty directories it
# mounts on. The image's own root filesystem comes on /dev/vda, the run's config on /dev/vdb.
#
# Cached like build-initramfs.sh: ${VIREO_CACHE:-$HOME/.cache/vireo}/image-initramfs-<sha256 of
# (image-init.c, this script, compiler and version)>/initramfs.cpio; built in a temp directory renamed into place.
# The cpio path is the LAST line on stdout; everything else goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$here/$(basename "${BASH_SOURCE[0]}")"
init="$here/image-init.c"
# Compiled with image-init.c: the network, terminal and rlimit setup the host asks for.
setup="$here/image-setup.c"
setup_header="$here/image-setup.h"
# Compiled with image-init.c: the exec agent (vsock port 1026) the containerd shim's exec uses.
agent="$here/image-agent.c"
agent_header="$here/image-agent.h"
# Compiled with the agent: a pod's containers (hot-attached root disks, mount namespaces).
pod="$here/image-pod.c"
pod_header="$here/image-pod.h"
# Included by image-init.c and image-agent.c: the vsock address.
vsock_header="$here/image-vsock.h"
cache_root=${VIREO_CACHE:-$HOME/.cache/vireo}

log() { printf 'build-image-initramfs: %s\n' "$*" >&2; }
die() { printf 'build-image-initramfs: ERROR: %s\n' "$*" >&2; exit 1; }

[ -f "$init" ] || die "missing $init"
# musl-gcc (Debian musl-tools) makes a ~60 KB init instead of glibc's ~700 KB: the guest kernel copies
# the initramfs in (emulated, on PVM hosts) kernel mode, so every KB costs boot time. gcc is the fallback.
if command -v musl-gcc >/dev/null; then
    cc=musl-gcc
else
    cc=gcc
    [ -f /usr/lib/x86_64-linux-gnu/libc.a ] || die "no static libc (libc6-dev) for gcc -static"
fi
command -v "$cc" >/dev/null || die "$cc not found (scripts/deps installs build-essential and musl-tools)"
gcc_version="$cc: $($cc --version | head -1)"

key=$( {
    printf 'gcc %s\n' "$gcc_version"
    printf -- '--- image-init.c\n'; cat "$init"
    printf -- '--- image-setup.c\n'; cat "$setup" "$setup_header"
    printf -- '--- image-agent.c\n'; cat "$agent" "$agent_header"
    printf -- '--- image-pod.c\n'; cat "$pod" "$pod_header"
    printf -- '--- image-vsock.h\n'; cat "$vsock_header"
    printf -- '--- build-image-initramfs.sh\n'; cat "$self"
} | sha256sum | cut -c1-64)
out="$cache_root/image-initramfs-$key"
if [ -f "$out/initramfs.cpio" ]; then echo "$out/initramfs.cpio"; exit 0; fi

mkdir -p "$cache_root"
exec 9>"$cache_root/.image-initramfs-$key.lock"
flock 9
if [ -f "$out/initramfs.cpio" ]; then echo "$out/initramfs.cpio"; exit 0; fi
rm -rf "$cache_root/.image-initramfs-$key.tmp."*

stage=$(mktemp -d "$cache_root/.image-initramfs-$key.tmp.XXXXXX")
trap 'rm -rf "$stage"' EXIT
cpio="$stage/initramfs.cpio"
"$cc" -static -Os -s -Wall -Werror -o "$stage/init" "$init" "$setup" "$agent" "$pod" >&2 || die "compiling $init failed"

# newc writer (as in build-initramfs.sh): 110-byte ASCII header, NUL-terminated name, pad to 4, data, pad.
ino=0x400000
offset=0
exec 3>"$cpio"
pad() { local n=$(( (4 - offset % 4) % 4 )); [ "$n" -eq 0 ] || { head -c "$n" /dev/zero >&3; offset=$((offset + n)); }; }
entry() {
    local name=$1 mode=$2 size=$3 rmaj=$4 rmin=$5 nlink=$6
    local namesize=$(( ${#name} + 1 ))
    ino=$((ino + 1))
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        "$ino" "$((8#$mode))" 0 0 "$nlink" 0 "$size" 0 0 "$rmaj" "$rmin" "$namesize" 0 >&3
    printf '%s\0' "$name" >&3
    offset=$((offset + 110 + namesize))
    pad
}
entry dev 040755 0 0 0 2
entry dev/console 020600 0 5 1 1
entry newroot 040755 0 0 0 2
size=$(stat -c %s "$stage/init")
entry init 0100755 "$size" 0 0 1
cat "$stage/init" >&3; offset=$((offset + size)); pad
entry TRAILER!!! 0 0 0 0 1
n=$(( (512 - offset % 512) % 512 ))
[ "$n" -eq 0 ] || { head -c "$n" /dev/zero >&3; offset=$((offset + n)); }
exec 3>&-
[ "$(stat -c %s "$cpio")" = "$offset" ] || die "internal error: wrote $(stat -c %s "$cpio") bytes, expected $offset"
printf 'gcc %s\nbytes %s\n' "$gcc_version" "$offset" > "$stage/build-info"
chmod 0755 "$stage"
[ -e "$out" ] && rm -rf "$out"
mv -T "$stage" "$out"
trap - EXIT
log "built $out/initramfs.cpio ($offset bytes)"
echo "$out/initramfs.cpio"
