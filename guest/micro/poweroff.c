/* poweroff: print one line and reset through the i8042, from user mode. */
#include "micro.h"

void micro_main(unsigned cpu, const struct hvm_start_info *si)
{
    (void)cpu;
    (void)si;
    uart_init();
    uart_puts("VIREO-MICRO poweroff\n");
    poweroff();
}
