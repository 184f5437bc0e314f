/*
 * start.S - the only guest-kernel (CPL0) code of the Vireo micro-guests.
 *
 * On the KVM hosts we test on, guest CPL0 is emulated instruction by
 * instruction (~1.8M instr/s) while CPL3 runs natively, so this file does the
 * minimum: load a GDT/IDT/TSS, turn on long mode with static page tables, and
 * iretq to user mode with IOPL=3 (so user code can do port I/O itself).
 *
 * Entry (Xen PVH): 32-bit protected mode, paging off, flat segments,
 * interrupts off, EBX = hvm_start_info. APs come in through the real-mode
 * trampoline below, copied to 0x10000 by the smp program.
 */
#include "micro.h"

#define EFER          0xC0000080
#define EFER_LME      0x100
#define CR0_PE        0x1
#define CR0_CD_NW     0x60000000
#define CR0_PG        0x80000000
#define CR4_PAE       0x20
#define RFLAGS_USER   0x3002        /* IOPL=3, reserved bit 1, IF=0 */

/* ---- Xen PVH ELF note: where the loader jumps, in 32-bit mode ---------- */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4                         /* namesz: "Xen\0" */
    .long 4                         /* descsz: 32-bit entry address */
    .long 18                        /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .long _start
    .balign 4

    .weak micro_kernel_main

/* ---- BSP entry ----------------------------------------------------------- */
    .section .text.boot, "ax"
    .code32
    .globl _start
_start:
    cli
    cld
    movl %ebx, boot_info            /* keep hvm_start_info for user code */
    lgdt gdtr                       /* our own GDT; the loader's may go away */
    ljmp $SEL_KCODE32, $1f
1:  movl $SEL_KDATA, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %eax, %fs
    movl %eax, %gs
    xorl %esi, %esi                 /* ESI = 0: bootstrap CPU */
    jmp enter_long

/* APs arrive here from the trampoline in 32-bit protected mode. */
    .globl ap_entry32
ap_entry32:
    movl $SEL_KDATA, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %eax, %fs
    movl %eax, %gs
    movl $1, %esi                   /* ESI = 1: application processor */

/* Shared by BSP and APs: PAE + static page tables + EFER.LME + paging. */
enter_long:
    movl %cr4, %eax
    orl $CR4_PAE, %eax
    movl %eax, %cr4
    movl $pml4, %eax
    movl %eax, %cr3
    movl $EFER, %ecx
    rdmsr
    orl $EFER_LME, %eax
    wrmsr
    movl %cr0, %eax
    orl $(CR0_PG | CR0_PE), %eax
    andl $~CR0_CD_NW, %eax          /* APs come out of INIT with caches off */
    movl %eax, %cr0
    ljmp $SEL_KCODE64, $long_mode

    .code64
long_mode:
    movl $SEL_KDATA, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    xorl %eax, %eax
    movl %eax, %fs
    movl %eax, %gs
    movl %esi, %r15d                /* upper halves are undefined after the switch */

    /* CPU index: BSP runs first so it gets 0. The smp program adds a high
     * "closed" bit once it stops waiting, so late APs see an index >= MAX. */
    movl $1, %eax
    lock xaddl %eax, next_cpu(%rip)
    cmpl $MAX_CPUS, %eax
    jae park
    movl %eax, %r12d                /* r12 = cpu index */

    leaq 1(%r12), %rax              /* kernel stack top for this CPU */
    imulq $KSTACK_SIZE, %rax
    leaq kstacks(%rax), %rsp

    testl %r15d, %r15d
    jnz 2f
    call fill_idt                   /* once, by the BSP, before any AP exists */
2:  lidt idtr(%rip)

    /* This CPU's TSS: RSP0 so a fault in user mode lands on our kernel stack,
     * and the shared all-ports-allowed I/O bitmap (see io_bitmap below). */
    imulq $TSS_SIZE, %r12, %rbx
    leaq tss_area(%rbx), %rbx
    movq %rsp, 4(%rbx)              /* RSP0 */
    leaq io_bitmap(%rip), %rax
    subq %rbx, %rax
    movw %ax, 102(%rbx)             /* I/O map base, relative to this TSS */
    leaq io_bitmap_end - 1(%rip), %r8
    subq %rbx, %r8                  /* limit covers the bitmap (< 64 KiB) */
    movq %rbx, %rax                 /* build the 16-byte TSS descriptor */
    andq $0xFFFFFF, %rax
    shlq $16, %rax                  /* base[23:0] -> bits 16..39 */
    movq %rbx, %rdx
    shrq $24, %rdx
    andq $0xFF, %rdx
    shlq $56, %rdx                  /* base[31:24] -> bits 56..63 */
    orq %rdx, %rax
    orq %r8, %rax                   /* limit[15:0] */
    movabsq $(0x89 << 40), %rdx     /* present, DPL0, available 64-bit TSS */
    orq %rdx, %rax
    movq %r12, %rcx
    shlq $4, %rcx
    leaq gdt+SEL_TSS0(%rcx), %rdx
    movq %rax, (%rdx)
    movq $0, 8(%rdx)                /* base[63:32] = 0 */
    leaq SEL_TSS0(%rcx), %rax
    ltr %ax

    /* A program with micro_kernel_main (weak; 0 when absent) stays in CPL0
     * on the BSP: e.g. idle, which must be able to hlt. */
    testl %r15d, %r15d
    jnz 5f
    movl $micro_kernel_main, %eax
    testl %eax, %eax
    jz 5f
    movl boot_info(%rip), %edi
    call *%rax
    jmp park
5:

    leaq 1(%r12), %rax              /* user stack top for this CPU */
    imulq $USTACK_SIZE, %rax
    leaq ustacks(%rax), %rax

    movq %r12, %rdi                 /* micro_main(cpu, start_info or NULL) */
    xorl %esi, %esi
    testl %r15d, %r15d
    jnz 3f
    movl boot_info(%rip), %esi
3:
    /* Drop to CPL3 with IOPL=3; from here on everything runs natively. */
    pushq $(SEL_UDATA | 3)
    pushq %rax
    pushq $RFLAGS_USER
    pushq $(SEL_UCODE64 | 3)
    pushq $user_entry
    iretq

park:                               /* CPUs we have no room (or time) for */
    cli
    hlt
    jmp park

/* IDT gates for the 32 exception vectors, all into isr_stubs (16 bytes each). */
fill_idt:
    leaq isr_stubs(%rip), %rsi
    leaq idt(%rip), %rdi
    movl $NVEC, %ecx
1:  movl %esi, %eax
    andl $0xFFFF, %eax
    orl $(SEL_KCODE64 << 16), %eax  /* offset[15:0], selector */
    movl %eax, (%rdi)
    movl %esi, %eax
    andl $0xFFFF0000, %eax
    orl $0x8E00, %eax               /* offset[31:16], present, DPL0, int gate */
    movl %eax, 4(%rdi)
    movq $0, 8(%rdi)                /* offset[63:32] = 0: image is below 4 GiB */
    addq $16, %rsi
    addq $16, %rdi
    decl %ecx
    jnz 1b
    ret

/* Exception stubs: push a dummy error code where the CPU pushes none, then
 * the vector, so isr_common always sees: vec, err, rip, cs, rflags, rsp, ss. */
    .balign 16
isr_stubs:
    .set vec, 0
    .rept NVEC
    .balign 16
    .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    jmp isr_common
    .set vec, vec + 1
    .endr

isr_common:                         /* CPL0: report and power off */
    movq %rsp, %rdi
    movq %cr2, %rsi
    andq $-16, %rsp
    call fault_report
    jmp park

/* First user-mode instruction: the stack top is 16-byte aligned here. */
user_entry:
    call micro_main
    call poweroff
4:  jmp 4b

/* ---- AP trampoline: copied to 0x10000, entered in real mode at 1000:0000 by
 * a STARTUP IPI with vector 0x10. Must be position independent except for
 * the absolute GDT address and ap_entry32, which the linker fills in. */
    .code16
    .globl ap_tramp_start, ap_tramp_end
ap_tramp_start:
    cli
    movw %cs, %ax
    movw %ax, %ds
    lgdtl ap_gdtr - ap_tramp_start  /* 32-bit base: the GDT is above 1 MiB */
    movl %cr0, %eax
    orl $CR0_PE, %eax
    movl %eax, %cr0
    ljmpl $SEL_KCODE32, $ap_entry32 /* straight into the shared image */
    .balign 4
ap_gdtr:
    .word gdt_end - gdt - 1
    .long gdt
ap_tramp_end:
    .code64

/* ---- data ---------------------------------------------------------------- */
    .data
    .balign 16
gdt:
    .quad 0
    .quad 0x00af9a000000ffff        /* 0x08 kernel code, 64-bit */
    .quad 0x00cf92000000ffff        /* 0x10 kernel data */
    .quad 0x00cf9a000000ffff        /* 0x18 kernel code, 32-bit (boot, APs) */
    .quad 0x00cff2000000ffff        /* 0x20 user data, DPL3 */
    .quad 0x00affa000000ffff        /* 0x28 user code, 64-bit, DPL3 */
    .fill MAX_CPUS * 2, 8, 0        /* 0x30 + 16*i: TSS of CPU i */
gdt_end:

    .balign 8
    .word 0
gdtr:                               /* 32-bit lgdt reads the low half of base */
    .word gdt_end - gdt - 1
    .quad gdt
    .balign 8
    .word 0
idtr:
    .word NVEC * 16 - 1
    .quad idt

/* Per-CPU TSSs followed by one I/O permission bitmap they all point at (each
 * TSS's I/O map base is the distance to it). The bitmap allows every port.
 * With IOPL=3 the CPU never reads it, but a host that will not run guest
 * user mode with IOPL=3 (PVM-style KVM forces IOPL=0 there) still lets
 * in/out through when it emulates them against the guest TSS bitmap. */
    .balign 16
tss_area:
    .fill MAX_CPUS * TSS_SIZE, 1, 0
io_bitmap:
    .fill 65536 / 8, 1, 0           /* 0 = allowed, ports 0 - 0xFFFF */
    .byte 0xFF                      /* required terminator byte */
io_bitmap_end:

    .balign 4
boot_info:
    .long 0
    .globl next_cpu
next_cpu:
    .long 0

/* Static identity page tables (no CPL0 loop to build them): the first GiB in
 * 2 MiB pages, all user-accessible so CPL3 can reach start_info, the cmdline
 * and the trampoline page; plus, uncached, the local APIC page, the 2 MiB
 * at MMIO_PROBE that the mmio program pokes (no device lives there) and the
 * 2 MiB of virtio-mmio windows at 0xD0000000 that vsockflood drives. */
    .section .data.pagetables, "aw"
    .balign 4096
pml4:
    .quad pdpt + 0x07               /* present, writable, user */
    .fill 511, 8, 0
pdpt:
    .quad pd_low + 0x07             /* 0 - 1 GiB */
    .quad 0, 0
    .quad pd_apic + 0x07            /* 3 - 4 GiB */
    .fill 508, 8, 0
pd_low:
    .set addr, 0
    .rept 512
    .quad addr + 0x87               /* present, writable, user, 2 MiB */
    .set addr, addr + 0x200000
    .endr
pd_apic:
    .fill 0x80, 8, 0
    .quad 0xD0000000 + 0x9F         /* virtio-mmio windows, uncached: vsockflood */
    .fill 0x100 - 0x81, 8, 0
    .quad MMIO_PROBE + 0x9F         /* 0xE0000000, uncached: mmio program */
    .fill 0x1F7 - 0x101, 8, 0
    .quad 0xFEE00000 + 0x9F         /* + PWT, PCD: xAPIC registers */
    .fill 512 - 0x1F8, 8, 0

/* Big, never zeroed (every byte is written before it is read), so it stays
 * out of the file; the link script puts C's .bss in the file instead. */
    .section .noinit, "aw", @nobits
    .balign 16
idt:
    .skip NVEC * 16
    .balign 4096
kstacks:
    .skip MAX_CPUS * KSTACK_SIZE
ustacks:
    .skip MAX_CPUS * USTACK_SIZE

    .section .note.GNU-stack, "", @progbits
