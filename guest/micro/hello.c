/* hello: one byte on COM1, then exit through isa-debug-exit (status 1).
 * The smallest full start-to-exit round trip, for startup timing. */
#include "micro.h"

void micro_main(unsigned cpu, const struct hvm_start_info *si)
{
    (void)cpu;
    (void)si;
    uart_putc('!');
    debug_exit(0);
}
