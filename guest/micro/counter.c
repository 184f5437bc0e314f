/* counter: "count=<n>" about every 100 ms of TSC time, forever, or until
 * count=N when the command line holds "count=N". */
#include "micro.h"

/* "count=N" as a whole word in the command line; 1 and *n if found. */
static int cmdline_limit(const char *s, uint64_t *n)
{
    static const char key[] = "count=";

    for (int i = 0; s && i < 4096 && s[i]; i++) {
        if (i > 0 && s[i - 1] != ' ')
            continue;
        int k = 0;
        while (key[k] && s[i + k] == key[k])
            k++;
        if (key[k])
            continue;
        const char *d = s + i + k;
        uint64_t v = 0;
        int digits = 0;
        while (*d >= '0' && *d <= '9' && digits < 19) {
            v = v * 10 + (uint64_t)(*d++ - '0');
            digits++;
        }
        if (digits) {
            *n = v;
            return 1;
        }
    }
    return 0;
}

void micro_main(unsigned cpu, const struct hvm_start_info *si)
{
    uint64_t limit = 0;
    int has_limit = cmdline_limit(boot_cmdline(si), &limit);
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
