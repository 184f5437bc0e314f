/* counter: "count=<n>" about every 100 ms of TSC time, forever, or until
 * count=N when the command line holds "count=N". */
#include "micro.h"

void micro_main(unsigned cpu, const struct hvm_start_info *si)
{
    uint64_t limit = 0;
    int has_limit = cmdline_u64(si, "count=", &limit);
    uint64_t period = tsc_khz() * 100;          /* 100 ms in TSC ticks */
    uint64_t next = rdtsc();

    (void)cpu;
    uart_init();
    uart_puts("VIREO-MICRO counter\n");
    for (uint64_t n = 0;; n++) {
        uart_puts("count=");
        uart_put_dec(n);
        uart_putc('\n');
        if (has_limit && n >= limit)
            poweroff();
        next += period;
        while ((int64_t)(rdtsc() - next) < 0)
            cpu_relax();
    }
}
