/* touch: mib=M (default 64) MiB of RAM from TOUCH_BASE written once per
 * 4 KiB page, then a summary line and isa-debug-exit (status 1). The VM
 * needs TOUCH_BASE + M MiB of RAM; the range is clipped to the mapped 1 GiB. */
#include "micro.h"

#define TOUCH_BASE (4ul << 20)  /* above the image (which ends below 3 MiB) */

void micro_main(unsigned cpu, const struct hvm_start_info *si)
{
    uint64_t mib = 64;

    (void)cpu;
    cmdline_u64(si, "mib=", &mib);
    if (mib > (USER_LIMIT - TOUCH_BASE) >> 20)
        mib = (USER_LIMIT - TOUCH_BASE) >> 20;
    volatile uint8_t *p = (volatile uint8_t *)TOUCH_BASE;
    for (uint64_t off = 0; off < mib << 20; off += 4096)
        p[off] = 1;
    uart_puts("VIREO-MICRO touch mib=");
    uart_put_dec(mib);
    uart_putc('\n');
    debug_exit(0);
}
