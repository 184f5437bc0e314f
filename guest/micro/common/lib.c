/*
 * lib.c - user-mode (CPL3, IOPL=3) library for the Vireo micro-guests:
 * polled COM1, power-off, TSC timing, boot-info access. Only fault_report
 * runs in CPL0 (called from start.S), and then only when something broke.
 */
#include "micro.h"

#define COM1      0x3F8
#define COM1_IER  (COM1 + 1)
#define COM1_LCR  (COM1 + 3)
#define COM1_LSR  (COM1 + 5)
#define LSR_DR    0x01          /* a received byte is waiting */
#define LSR_THRE  0x20          /* transmit holding register empty */

void uart_init(void)
{
    outb(COM1_LCR, 0x03);       /* 8N1, DLAB off in case firmware left it on */
    outb(COM1_IER, 0x00);       /* polled: no UART interrupts */
}

void uart_putc(char c)
{
    while (!(inb(COM1_LSR) & LSR_THRE))
        cpu_relax();
    outb(COM1, (uint8_t)c);
}

void uart_puts(const char *s)
{
    while (*s)
        uart_putc(*s++);
}

void uart_put_dec(uint64_t v)
{
    char buf[21];
    int i = sizeof buf;
    buf[--i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    uart_puts(&buf[i]);
}

void uart_put_hex(uint64_t v)
{
    char buf[17];
    int i = sizeof buf;
    buf[--i] = 0;
    do {
        buf[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    uart_puts(&buf[i]);
}

int uart_getc(void)
{
    while (!(inb(COM1_LSR) & LSR_DR))
        cpu_relax();
    return inb(COM1);
}

void poweroff(void)
{
    outb(0x64, 0xFE);           /* i8042: pulse the reset line */
    for (;;)
        cpu_relax();
}

void debug_exit(uint8_t v)
{
    outb(DEBUG_EXIT, v);        /* the VMM stops here if it has the port */
    poweroff();
}

/* TSC kHz from the hypervisor timing leaf 0x40000010 when the hypervisor
 * range reaches it; otherwise (or if the value is implausible, since this
 * host leaks its own CPUID) assume 2 GHz. Timing is approximate by design. */
uint64_t tsc_khz(void)
{
    static uint64_t cached;     /* CPUs may race here; they store the same value */
    uint64_t khz = 2000000;
    uint32_t r[4];

    if (cached)
        return cached;
    cpuid(0x40000000, r);
    if (r[0] >= 0x40000010 && r[0] < 0x40010000) {
        cpuid(0x40000010, r);
        if (r[0] >= 100000 && r[0] <= 10000000)
            khz = r[0];
    }
    __atomic_store_n(&cached, khz, __ATOMIC_RELAXED);
    return khz;
}

void tsc_delay_us(uint64_t us)
{
    uint64_t end = rdtsc() + us * tsc_khz() / 1000;
    while ((int64_t)(rdtsc() - end) < 0)
        cpu_relax();
}

/* start_info and the command line are only trusted if they sit inside the
 * user-mapped first GiB and the magic matches. */
const char *boot_cmdline(const struct hvm_start_info *si)
{
    uintptr_t p = (uintptr_t)si;

    if (p == 0 || p >= USER_LIMIT - sizeof *si || si->magic != HVM_START_MAGIC)
        return NULL;
    if (si->cmdline_paddr == 0 || si->cmdline_paddr >= USER_LIMIT - 4096)
        return NULL;
    return (const char *)(uintptr_t)si->cmdline_paddr;
}

int cmdline_u64(const struct hvm_start_info *si, const char *key, uint64_t *v)
{
    const char *s = boot_cmdline(si);

    for (int i = 0; s && i < 4096 && s[i]; i++) {
        if (i > 0 && s[i - 1] != ' ')
            continue;
        int k = 0;
        while (key[k] && s[i + k] == key[k])
            k++;
        if (key[k])
            continue;
        const char *d = s + i + k;
        uint64_t n = 0;
        int digits = 0;
        while (*d >= '0' && *d <= '9' && digits < 19) {
            n = n * 10 + (uint64_t)(*d++ - '0');
            digits++;
        }
        if (digits) {
            *v = n;
            return 1;
        }
    }
    return 0;
}

void *memcpy(void *d, const void *s, size_t n)
{
    char *dp = d;
    const char *sp = s;
    while (n--)
        *dp++ = *sp++;
    return d;
}

void *memset(void *d, int c, size_t n)
{
    char *dp = d;
    while (n--)
        *dp++ = (char)c;
    return d;
}

/* CPL0, from isr_common: an exception means a bug, so say where and stop
 * rather than triple-fault silently. frame = vec, err, rip, cs, rflags, rsp, ss. */
void fault_report(const uint64_t *frame, uint64_t cr2)
{
    uart_puts("\nVIREO-MICRO fault vec=");
    uart_put_dec(frame[0]);
    uart_puts(" err=0x");
    uart_put_hex(frame[1]);
    uart_puts(" rip=0x");
    uart_put_hex(frame[2]);
    uart_puts(" cs=0x");
    uart_put_hex(frame[3]);
    uart_puts(" rflags=0x");
    uart_put_hex(frame[4]);
    uart_puts(" rsp=0x");
    uart_put_hex(frame[5]);
    uart_puts(" cr2=0x");
    uart_put_hex(cr2);
    uart_putc('\n');
    poweroff();
}
