#!/bin/bash
# Boot every micro-guest under QEMU and check its serial output.
#   guest/micro/test-qemu.sh [OUTDIR] [ACCEL]     (ACCEL: tcg (default) or kvm)
# Needs qemu-system-x86_64 (Debian: apt-get install -y qemu-system-x86).
set -u
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/out"}
accel=${2:-tcg}
fails=0

q() {   # q MACHINE SMP ELF [extra qemu args...]: serial output on stdout
    local m=$1 smp=$2 elf=$3
    shift 3
    timeout 60 qemu-system-x86_64 -M "$m" -accel "$accel" -m 64 -smp "$smp" \
        -display none -chardev stdio,id=s0,signal=off -serial chardev:s0 \
        -no-reboot -kernel "$out/$elf" "$@" 2>/dev/null
}

check() {   # check NAME EXPECTED ACTUAL
    if [ "$2" == "$3" ]; then
        echo "ok   $1"
    else
        echo "FAIL $1"; echo "  expected: $(printf %q "$2")"; echo "  got:      $(printf %q "$3")"
        fails=$((fails + 1))
    fi
}

check "poweroff pc" "VIREO-MICRO poweroff" "$(q pc 1 poweroff.elf </dev/null)"
check "poweroff microvm" "VIREO-MICRO poweroff" "$(q microvm 1 poweroff.elf -device i8042 </dev/null)"
check "counter count=3" "$(printf 'VIREO-MICRO counter\ncount=0\ncount=1\ncount=2\ncount=3')" \
    "$(q pc 1 counter.elf -append 'console=ttyS0 count=3' </dev/null)"
check "counter count=0" "$(printf 'VIREO-MICRO counter\ncount=0')" \
    "$(q q35 1 counter.elf -append count=0 </dev/null)"
check "echo" "$(printf 'VIREO-MICRO echo ready\nhi there\n\nbye')" \
    "$( (sleep 1; printf 'hi there\n'; sleep 0.3; printf '\004') | q pc 1 echo.elf)"
# The bench/compare guests end through isa-debug-exit: QEMU exits with status (0 << 1) | 1 = 1.
dx=(-device isa-debug-exit,iobase=0x501,iosize=1)
qx() {  # qx NAME EXPECTED MACHINE ELF [args...]: output and exit status 1
    local name=$1 want=$2 m=$3 elf=$4 got rc
    shift 4
    got=$(q "$m" 1 "$elf" "${dx[@]}" "$@" </dev/null); rc=$?
    check "$name" "$want (status 1)" "$got (status $rc)"
}
for m in pc microvm; do
    qx "hello $m" "!" "$m" hello.elf
    qx "pio n=1000 $m" "VIREO-MICRO pio n=1000" "$m" pio.elf -append n=1000
    qx "mmio n=1000 $m" "VIREO-MICRO mmio n=1000" "$m" mmio.elf -append n=1000
    qx "touch mib=8 $m" "VIREO-MICRO touch mib=8" "$m" touch.elf -append mib=8
done
check "idle microvm" "VIREO-MICRO idle" "$(timeout 5 qemu-system-x86_64 -M microvm -accel "$accel" -m 64 \
    -display none -serial stdio -no-reboot -kernel "$out/idle.elf" </dev/null 2>/dev/null)"
for m in pc q35 pc,acpi=off microvm; do
    for n in 1 2 4; do
        extra=(); [ "$m" == microvm ] && extra=(-device i8042)
        got=$(q "$m" "$n" smp.elf "${extra[@]}" </dev/null)
        want=$(for i in $(seq 0 $((n - 1))); do echo "cpu $i running"; done; echo "VIREO-MICRO smp cpus=$n")
        check "smp $m -smp $n" "$want" "$(printf '%s\n' "$got" | sort -V | sed '/^VIREO/d'; printf '%s\n' "$got" | tail -1)"
    done
done
[ "$fails" -eq 0 ] && echo "all passed" || { echo "$fails failed"; exit 1; }
