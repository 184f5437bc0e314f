#!/usr/bin/env bash
# Build Vireo's test guest initramfs: an UNCOMPRESSED newc cpio holding Debian's busybox-static as
# /bin/busybox (plus applet symlinks for the shell), a /dev/console node, empty /proc /sys /tmp, and
# guest/init.c compiled (gcc -static) as /init.
#
# The archive is written by this script itself (newc headers are plain ASCII), so it needs neither
# root (for mknod) nor the cpio tool, and it is byte-for-byte reproducible (uid/gid 0, mtime 0).
#
# Output is cached outside the repository in
#   ${VIREO_CACHE:-$HOME/.cache/vireo}/initramfs-<sha256 of (init.c, this script, busybox-static and gcc
#   versions)>/initramfs.cpio, with the compiled init beside it as `init` (the Linux tests put it on
#   ext4 root disks too).
# The cpio path is the LAST line on stdout; everything else goes to stderr:
#   cpio=$(guest/build-initramfs.sh | tail -1)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$here/$(basename "${BASH_SOURCE[0]}")"
init="$here/init.c"
cache_root=${VIREO_CACHE:-$HOME/.cache/vireo}

log() { printf 'build-initramfs: %s\n' "$*" >&2; }
die() { printf 'build-initramfs: ERROR: %s\n' "$*" >&2; exit 1; }

[ -f "$init" ] || die "missing $init"

pkg_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]
}
if ! pkg_installed busybox-static; then
    log "installing missing Debian package: busybox-static"
    [ "$(id -u)" -eq 0 ] || die "need root to apt-get install busybox-static"
    DEBIAN_FRONTEND=noninteractive apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox-static >&2
fi
bb_version=$(dpkg-query -W -f='${Version}' busybox-static)
command -v gcc >/dev/null || die "gcc not found (scripts/deps installs build-essential)"
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || die "no static libc (libc6-dev) for gcc -static"
gcc_version=$(gcc --version | head -1)

key=$( {
    printf 'busybox-static %s\n' "$bb_version"
    printf 'gcc %s\n' "$gcc_version"
    printf -- '--- init.c\n'; cat "$init"
    printf -- '--- build-initramfs.sh\n'; cat "$self"
} | sha256sum | cut -c1-64)
out="$cache_root/initramfs-$key"

if [ -f "$out/initramfs.cpio" ]; then
    echo "$out/initramfs.cpio"
    exit 0
fi

mkdir -p "$cache_root"
exec 9>"$cache_root/.initramfs-$key.lock"
flock 9
if [ -f "$out/initramfs.cpio" ]; then   # built by whoever held the lock
    echo "$out/initramfs.cpio"
    exit 0
fi

rm -rf "$cache_root/.initramfs-$key.tmp."*   # debris of a killed build of this key

busybox=/bin/busybox
[ -x "$busybox" ] || die "$busybox not found (is busybox-static installed correctly?)"
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' \
    || [ "$(readelf -l "$busybox" 2>/dev/null | grep -c INTERP)" = 0 ] \
    || die "$busybox is not statically linked (the dynamic 'busybox' package is installed instead of busybox-static?)"

stage=$(mktemp -d "$cache_root/.initramfs-$key.tmp.XXXXXX")
trap 'rm -rf "$stage"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cpio="$stage/initramfs.cpio"
gcc -static -O2 -s -Wall -Werror -o "$stage/init" "$init" >&2 || die "compiling $init failed"

# ---------------------------------------------------------------------------------------------
# newc writer. Each entry: 110-byte ASCII header, NUL-terminated name, pad to 4, data, pad to 4.
ino=0x300000
offset=0
exec 3>"$cpio"

pad() {   # pad the archive to a multiple of 4 bytes
    local n=$(( (4 - offset % 4) % 4 ))
    [ "$n" -eq 0 ] || { head -c "$n" /dev/zero >&3; offset=$((offset + n)); }
}

# entry NAME MODE(octal) SIZE RDEVMAJOR RDEVMINOR NLINK  (data, if any, is written by the caller)
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
dir()     { entry "$1" 040755 0 0 0 2; }
chardev() { entry "$1" "$2" 0 "$3" "$4" 1; }
symlink() {   # symlink NAME TARGET
    entry "$1" 0120777 "${#2}" 0 0 1
    printf '%s' "$2" >&3; offset=$((offset + ${#2})); pad
}
regular() {   # regular NAME MODE SOURCE-FILE
    local size; size=$(stat -L -c %s "$3")
    entry "$1" "$2" "$size" 0 0 1
    cat "$3" >&3; offset=$((offset + size)); pad
}

dir dev
chardev dev/console 020600 5 1
dir proc
dir sys
dir tmp
dir root
dir bin
regular bin/busybox 0100755 "$busybox"
# Applets reachable by name in the shell (init itself runs /bin/busybox udhcpc and needs none).
for applet in sh ash cat echo ls mkdir mount umount grep sleep dmesg uname ip ifconfig route \
              reboot poweroff halt sync dd free ps top kill cp mv rm ln df du head tail wc hexdump \
              md5sum sha256sum vi mknod chmod chown date env hostname ping nc wget udhcpc stty; do
    symlink "bin/$applet" busybox
done
symlink sbin bin
regular init 0100755 "$stage/init"
entry TRAILER!!! 0 0 0 0 1
# The kernel reads the archive in 512-byte blocks historically; pad the end like cpio(1) does.
n=$(( (512 - offset % 512) % 512 ))
[ "$n" -eq 0 ] || { head -c "$n" /dev/zero >&3; offset=$((offset + n)); }
exec 3>&-

[ "$(stat -c %s "$cpio")" = "$offset" ] || die "internal error: wrote $(stat -c %s "$cpio") bytes, expected $offset"
if command -v cpio >/dev/null; then   # self-check with GNU cpio when it is available
    cpio -it --quiet < "$cpio" | grep -qx init || die "generated archive does not list /init"
fi
{
    printf 'busybox-static %s\n' "$bb_version"
    printf 'gcc %s\n' "$gcc_version"
    printf 'bytes %s\n' "$offset"
    printf 'built %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} > "$stage/build-info"
chmod 0755 "$stage"

[ -e "$out" ] && rm -rf "$out"
mv -T "$stage" "$out"
log "built $out/initramfs.cpio ($offset bytes, busybox-static $bb_version)"
echo "$out/initramfs.cpio"
