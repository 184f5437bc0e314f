/* echo: send every byte received on COM1 back; Ctrl-D (0x04) says bye and
 * powers off. Polls LSR from user mode, so each poll is one cheap I/O exit. */
#include "micro.h"

void micro_main(unsigned cpu, const struct hvm_start_info *si)
{
    (void)cpu;
    (void)si;
    uart_init();
    uart_puts("VIREO-MICRO echo ready\n");
    for (;;) {
        int c = uart_getc();
        if (c == 0x04) {
            uart_puts("\nbye\n");
            poweroff();
        }
        uart_putc((char)c);
    }
}
