/*
 * smp: start every other CPU with INIT/SIPI/SIPI, then a user-mode rendezvous
 * that proves they all run at once: nobody prints before everybody arrived.
 */
#include "micro.h"

#define LAPIC        0xFEE00000ul
#define LAPIC_SVR    0x0F0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define ICR_PENDING  (1u << 12)          /* delivery status */
#define ICR_ALL_BUT_SELF (3u << 18)
#define ICR_INIT     (ICR_ALL_BUT_SELF | (1u << 14) | (5u << 8)) /* assert, INIT */
#define ICR_SIPI     (ICR_ALL_BUT_SELF | (1u << 14) | (6u << 8) | (AP_TRAMPOLINE >> 12))
#define CLOSED       0x80000000u         /* added to next_cpu: no more CPUs */

static uint32_t arrived, ncpus, printed;
static spinlock_t out_lock;

static void lapic_write(uint32_t reg, uint32_t v) { *(volatile uint32_t *)(LAPIC + reg) = v; }
static uint32_t lapic_read(uint32_t reg) { return *(volatile uint32_t *)(LAPIC + reg); }

static uint32_t load(uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

/* Spin until *p >= want or the TSC passes deadline; the final value. */
static uint32_t wait_for(uint32_t *p, uint32_t want, uint64_t deadline)
{
    uint32_t v;
    while ((v = load(p)) < want && (int64_t)(rdtsc() - deadline) < 0)
        cpu_relax();
    return v;
}

static void send_ipi(uint32_t icr)
{
    lapic_write(LAPIC_ICR_HI, 0);
    lapic_write(LAPIC_ICR_LO, icr);
    for (int i = 0; i < 1000 && (lapic_read(LAPIC_ICR_LO) & ICR_PENDING); i++)
        tsc_delay_us(10);
}

static void start_aps(void)
{
    memcpy((void *)AP_TRAMPOLINE, ap_tramp_start, (size_t)(ap_tramp_end - ap_tramp_start));
    lapic_write(LAPIC_SVR, lapic_read(LAPIC_SVR) | 0x1FF); /* enable, spurious 0xFF */
    send_ipi(ICR_INIT);
    tsc_delay_us(10000);
    send_ipi(ICR_SIPI);
    tsc_delay_us(200);
    send_ipi(ICR_SIPI);
}

static void fail(const char *what, uint32_t got, uint32_t want)
{
    spin_lock(&out_lock);
    uart_puts("VIREO-MICRO smp error: ");
    uart_puts(what);
    uart_put_dec(got);
    uart_puts(" of ");
    uart_put_dec(want);
    uart_putc('\n');
    poweroff();
}

void micro_main(unsigned cpu, const struct hvm_start_info *si)
{
    uint64_t ticks_2s = tsc_khz() * 2000;
    uint32_t n;

    __atomic_fetch_add(&arrived, 1, __ATOMIC_SEQ_CST);
    if (cpu == 0) {
        uart_init();
        int expect = acpi_count_cpus(si);   /* 0: unknown, wait the full 2 s */
        if (expect > MAX_CPUS)
            expect = MAX_CPUS;
        uint64_t deadline = rdtsc() + ticks_2s;
        start_aps();
        wait_for(&arrived, expect > 0 ? (uint32_t)expect : ~0u, deadline);
        /* Close the door: late APs now draw an index >= MAX_CPUS and park. */
        uint32_t taken = __atomic_fetch_add(&next_cpu, CLOSED, __ATOMIC_SEQ_CST);
        n = taken < MAX_CPUS ? taken : MAX_CPUS;
        __atomic_store_n(&ncpus, n, __ATOMIC_RELEASE);
    } else {
        while (!(n = load(&ncpus)))
            cpu_relax();
    }

    /* Rendezvous: every started CPU took an index before BSP closed the door,
     * so each one arrives shortly; if one does not, report instead of hanging. */
    uint32_t a = wait_for(&arrived, n, rdtsc() + ticks_2s);
    if (a < n)
        fail("arrived ", a, n);

    spin_lock(&out_lock);
    uart_puts("cpu ");
    uart_put_dec(cpu);
    uart_puts(" running\n");
    spin_unlock(&out_lock);
    __atomic_fetch_add(&printed, 1, __ATOMIC_SEQ_CST);

    if (cpu != 0)
        for (;;)
            cpu_relax();
    uint32_t p = wait_for(&printed, n, rdtsc() + ticks_2s);
    if (p < n)
        fail("printed ", p, n);
    spin_lock(&out_lock);
    uart_puts("VIREO-MICRO smp cpus=");
    uart_put_dec(n);
    uart_putc('\n');
    poweroff();
}
