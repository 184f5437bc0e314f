/*
 * micro.h - shared definitions for the Vireo micro-guests.
 *
 * Included by start.S (assembler: only the #defines) and by the C library and
 * programs. Everything declared under !__ASSEMBLER__ runs in user mode (CPL3)
 * unless noted, because guest kernel mode is emulated ~1000x slower on the
 * KVM hosts we test on.
 */
#ifndef MICRO_H
#define MICRO_H

#define MAX_CPUS      64        /* CPUs that get a stack/TSS; more are parked */
#define KSTACK_SIZE   4096      /* per-CPU kernel stack (boot + fault reports) */
#define USTACK_SIZE   16384     /* per-CPU user stack */
#define TSS_SIZE      104       /* 64-bit TSS proper; the I/O bitmap is shared */
#define NVEC          32        /* IDT covers the CPU exceptions only */

/* GDT selectors (start.S lays the GDT out in this order). */
#define SEL_KCODE64   0x08
#define SEL_KDATA     0x10
#define SEL_KCODE32   0x18
#define SEL_UDATA     0x20
#define SEL_UCODE64   0x28
#define SEL_TSS0      0x30      /* CPU i's TSS at SEL_TSS0 + 16*i */

#define AP_TRAMPOLINE 0x10000   /* real-mode AP entry; SIPI vector 0x10 */
#define USER_LIMIT    0x40000000ull /* first 1 GiB is identity-mapped, U=1 */
#define MMIO_PROBE    0xE0000000    /* unclaimed MMIO page, mapped U=1 uncached */
#define DEBUG_EXIT    0x501     /* QEMU isa-debug-exit: write v -> exit (v<<1)|1 */

#ifndef __ASSEMBLER__
#include <stdint.h>
#include <stddef.h>

/* Xen arch-x86/hvm/start_info.h, version 0/1 layout. EBX points here at entry. */
struct hvm_start_info {
    uint32_t magic;             /* 0x336ec578 */
    uint32_t version;
    uint32_t flags;
    uint32_t nr_modules;
    uint64_t modlist_paddr;
    uint64_t cmdline_paddr;
    uint64_t rsdp_paddr;
    uint64_t memmap_paddr;      /* version >= 1 */
    uint32_t memmap_entries;    /* version >= 1 */
    uint32_t reserved;
};
#define HVM_START_MAGIC 0x336ec578u

/* Each program defines this. Called in CPL3 with IOPL=3 on every CPU that
 * comes up; si is the start info for CPU 0 and NULL on APs. Returning powers
 * the machine off. */
void micro_main(unsigned cpu, const struct hvm_start_info *si);

/* Optional (weak): a program that defines this runs it on the BSP in CPL0,
 * interrupts off, instead of micro_main; when it returns the CPU parks in a
 * cli/hlt loop. Only for programs that must halt (idle): CPL0 is slow. */
void micro_kernel_main(const struct hvm_start_info *si);

/* --- port I/O and CPU helpers (fine in CPL3 because IOPL=3) --- */
static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}
static inline void cpuid(uint32_t leaf, uint32_t r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
                     : "a"(leaf), "c"(0));
}

/* --- COM1 16550 at 0x3F8, polled --- */
void uart_init(void);
void uart_putc(char c);
void uart_puts(const char *s);
void uart_put_dec(uint64_t v);
void uart_put_hex(uint64_t v);
int uart_getc(void);                    /* blocks */

/* i8042 reset pulse: Vireo ends the VM, QEMU -no-reboot exits. */
__attribute__((noreturn)) void poweroff(void);
/* Write v to the isa-debug-exit port (VMM exits with status (v<<1)|1); where
 * no such port exists, power off instead. */
__attribute__((noreturn)) void debug_exit(uint8_t v);

/* --- time --- */
uint64_t tsc_khz(void);                 /* hypervisor leaf or 2 GHz guess */
void tsc_delay_us(uint64_t us);

/* --- user-mode spinlock --- */
typedef struct { volatile uint32_t v; } spinlock_t;
static inline void spin_lock(spinlock_t *l)
{
    while (__atomic_exchange_n(&l->v, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&l->v, __ATOMIC_RELAXED))
            cpu_relax();
}
static inline void spin_unlock(spinlock_t *l)
{
    __atomic_store_n(&l->v, 0, __ATOMIC_RELEASE);
}

/* --- boot info --- */
const char *boot_cmdline(const struct hvm_start_info *si); /* NULL if none */
/* Decimal value of "key" (e.g. "n=") as a whole word of the command line:
 * 1 and *v if found, else 0 and *v untouched. */
int cmdline_u64(const struct hvm_start_info *si, const char *key, uint64_t *v);
int acpi_count_cpus(const struct hvm_start_info *si);       /* 0 if unknown */

void *memcpy(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n);

/* --- from start.S --- */
extern uint32_t next_cpu;               /* CPU index allocator (lock xadd) */
extern char ap_tramp_start[], ap_tramp_end[];
#endif /* !__ASSEMBLER__ */
#endif
