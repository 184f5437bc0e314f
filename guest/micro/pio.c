/* pio: n=N (default 1000000) port writes to 0x80 from user mode, each one
 * exit to the VMM, then a summary line and isa-debug-exit (status 1). */
#include "micro.h"

void micro_main(unsigned cpu, const struct hvm_start_info *si)
{
    uint64_t n = 1000000;

    (void)cpu;
    cmdline_u64(si, "n=", &n);
    for (uint64_t i = 0; i < n; i++)
        outb(0x80, (uint8_t)i);
    uart_puts("VIREO-MICRO pio n=");
    uart_put_dec(n);
    uart_putc('\n');
    debug_exit(0);
}
