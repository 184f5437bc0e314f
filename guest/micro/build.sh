#!/bin/bash
# Build the Vireo micro-guests: guest/micro/build.sh [OUTDIR]
# Needs only Debian's gcc and binutils. Prints OUTDIR as the last line.
set -euo pipefail
trap 'echo "build.sh: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/out"}
mkdir -p "$out"
out=$(cd "$out" && pwd)

CC=${CC:-gcc}
PROGRAMS=(poweroff echo counter smp hello pio mmio touch idle vsockflood)

# Freestanding, static, non-PIC (the image runs at its link address), no SSE
# (CR4.OSFXSR stays off), no red zone (CPL0 code shares its stack with
# exception frames), no unwind tables or build-id: small, reproducible ELFs.
CFLAGS=(-m64 -O2 -std=gnu11 -Wall -Wextra -Werror
    -ffreestanding -fno-pie -fno-pic -mcmodel=small -mno-red-zone
    -mgeneral-regs-only -fno-stack-protector -fcf-protection=none
    -fno-asynchronous-unwind-tables -fno-unwind-tables
    -ffunction-sections -fdata-sections -I"$here/common")
LDFLAGS=(-m64 -nostdlib -static -no-pie -Wl,--build-id=none
    -Wl,-T,"$here/link.ld" -Wl,-z,max-page-size=0x1000 -Wl,--gc-sections
    -Wl,-z,noexecstack)

obj="$out/obj"
mkdir -p "$obj"
for src in start.S lib.c acpi.c; do
    "$CC" "${CFLAGS[@]}" -c "$here/common/$src" -o "$obj/${src%.*}.o"
done

for p in "${PROGRAMS[@]}"; do
    "$CC" "${CFLAGS[@]}" -c "$here/$p.c" -o "$obj/$p.o"
    "$CC" "${LDFLAGS[@]}" -o "$out/$p.elf" \
        "$obj/start.o" "$obj/$p.o" "$obj/lib.o" "$obj/acpi.o" -lgcc
    # Refuse to hand out an image without the PVH entry note.
    notes=$(readelf -n "$out/$p.elf")
    if ! grep -q 'Xen.*0x00000012' <<<"$notes"; then
        echo "build.sh: $p.elf has no Xen PVH note (type 18)" >&2
        exit 1
    fi
done
rm -rf "$obj"
echo "$out"
