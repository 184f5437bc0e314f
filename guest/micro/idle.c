/* idle: one line, then the BSP halts forever in CPL0 with interrupts off.
 * With an in-kernel irqchip KVM blocks the vCPU thread in HLT, so an idle
 * VM costs no host CPU: for density tests. Never exits by itself. */
#include "micro.h"

void micro_kernel_main(const struct hvm_start_info *si)
{
    (void)si;
    uart_init();
    uart_puts("VIREO-MICRO idle\n");
    /* returning parks this CPU in cli; hlt (start.S) */
}

void micro_main(unsigned cpu, const struct hvm_start_info *si)
{
    (void)cpu;                  /* not reached: micro_kernel_main never returns here */
    (void)si;
}
