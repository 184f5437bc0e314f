/* mmio: n=N (default 1000000) 32-bit writes from user mode to MMIO_PROBE,
 * an uncached page no device claims, each one exit to the VMM; then a
 * summary line and isa-debug-exit (status 1). */
#include "micro.h"

void micro_main(unsigned cpu, const struct hvm_start_info *si)
{
    volatile uint32_t *probe = (volatile uint32_t *)(uintptr_t)MMIO_PROBE;
    uint64_t n = 1000000;

    (void)cpu;
    cmdline_u64(si, "n=", &n);
    for (uint64_t i = 0; i < n; i++)
        *probe = (uint32_t)i;
    uart_puts("VIREO-MICRO mmio n=");
    uart_put_dec(n);
    uart_putc('\n');
    debug_exit(0);
}
