// Thin C layer over <linux/kvm.h>: one typed wrapper per ioctl (returning -errno so no Swift
// runs between the syscall and reading errno), kvm_run accessors for its anonymous unions, and
// fixed-size containers for the structs with flexible array members Swift cannot import.
#ifndef CKVM_H
#define CKVM_H

#include <linux/kvm.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <stddef.h>

#define CKVM_MAX_CPUID_ENTRIES 256
#define CKVM_MAX_MSR_ENTRIES 64

// Same layout as kvm_cpuid2 / kvm_msrs with a fixed-size array in place of the flexible one.
struct ckvm_cpuid {
    __u32 nent;
    __u32 padding;
    struct kvm_cpuid_entry2 entries[CKVM_MAX_CPUID_ENTRIES];
};

struct ckvm_msrs {
    __u32 nmsrs;
    __u32 pad;
    struct kvm_msr_entry entries[CKVM_MAX_MSR_ENTRIES];
};

_Static_assert(sizeof(struct kvm_regs) == 144, "kvm_regs layout");
_Static_assert(sizeof(struct kvm_sregs) == 312, "kvm_sregs layout");
_Static_assert(sizeof(struct kvm_lapic_state) == 1024, "kvm_lapic_state layout");
_Static_assert(sizeof(struct kvm_irqfd) == 32, "kvm_irqfd layout");
_Static_assert(sizeof(struct kvm_ioeventfd) == 64, "kvm_ioeventfd layout");
_Static_assert(offsetof(struct ckvm_cpuid, entries) == sizeof(struct kvm_cpuid2), "cpuid entries follow header");
_Static_assert(offsetof(struct ckvm_msrs, entries) == sizeof(struct kvm_msrs), "msr entries follow header");

static inline int ckvm_result(int r) { return r < 0 ? -errno : r; }

// --- system (/dev/kvm) ---
static inline int ckvm_get_api_version(int fd) { return ckvm_result(ioctl(fd, KVM_GET_API_VERSION, 0)); }
static inline int ckvm_check_extension(int fd, int cap) { return ckvm_result(ioctl(fd, KVM_CHECK_EXTENSION, cap)); }
static inline int ckvm_create_vm(int fd, unsigned long type) { return ckvm_result(ioctl(fd, KVM_CREATE_VM, type)); }
static inline int ckvm_get_vcpu_mmap_size(int fd) { return ckvm_result(ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0)); }
static inline int ckvm_get_supported_cpuid(int fd, struct ckvm_cpuid *c) {
    c->nent = CKVM_MAX_CPUID_ENTRIES;
    return ckvm_result(ioctl(fd, KVM_GET_SUPPORTED_CPUID, c));
}

// --- VM ---
static inline int ckvm_set_user_memory_region(int fd, uint32_t slot, uint32_t flags, uint64_t gpa, uint64_t size, uint64_t hva) {
    struct kvm_userspace_memory_region r = { .slot = slot, .flags = flags, .guest_phys_addr = gpa,
                                             .memory_size = size, .userspace_addr = hva };
    return ckvm_result(ioctl(fd, KVM_SET_USER_MEMORY_REGION, &r));
}
static inline int ckvm_set_tss_addr(int fd, unsigned long addr) { return ckvm_result(ioctl(fd, KVM_SET_TSS_ADDR, addr)); }
static inline int ckvm_set_identity_map_addr(int fd, uint64_t addr) { return ckvm_result(ioctl(fd, KVM_SET_IDENTITY_MAP_ADDR, &addr)); }
static inline int ckvm_create_irqchip(int fd) { return ckvm_result(ioctl(fd, KVM_CREATE_IRQCHIP, 0)); }
static inline int ckvm_create_pit2(int fd, uint32_t flags) {
    struct kvm_pit_config c; memset(&c, 0, sizeof c); c.flags = flags;
    return ckvm_result(ioctl(fd, KVM_CREATE_PIT2, &c));
}
static inline int ckvm_irq_line(int fd, uint32_t irq, uint32_t level) {
    struct kvm_irq_level l = { .irq = irq, .level = level };
    return ckvm_result(ioctl(fd, KVM_IRQ_LINE, &l));
}
// irqfd: an eventfd write injects `gsi` (edge: KVM raises then lowers the line); DEASSIGN removes it.
static inline int ckvm_irqfd(int fd, int eventfd, uint32_t gsi, uint32_t flags) {
    struct kvm_irqfd i; memset(&i, 0, sizeof i);
    i.fd = (uint32_t)eventfd; i.gsi = gsi; i.flags = flags;
    return ckvm_result(ioctl(fd, KVM_IRQFD, &i));
}
// ioeventfd: a guest write of `len` bytes at `addr` (matching `datamatch` when asked) signals the eventfd
// inside KVM, without an exit to user space.
static inline int ckvm_ioeventfd(int fd, int eventfd, uint64_t addr, uint32_t len, int has_datamatch,
                                 uint64_t datamatch, int pio, int deassign) {
    struct kvm_ioeventfd e; memset(&e, 0, sizeof e);
    e.datamatch = datamatch; e.addr = addr; e.len = len; e.fd = eventfd;
    e.flags = (has_datamatch ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0) | (pio ? KVM_IOEVENTFD_FLAG_PIO : 0)
            | (deassign ? KVM_IOEVENTFD_FLAG_DEASSIGN : 0);
    return ckvm_result(ioctl(fd, KVM_IOEVENTFD, &e));
}
// A close-on-exec eventfd for KVM to hold (an fd, or -errno).
static inline int ckvm_eventfd(void) { return ckvm_result(eventfd(0, EFD_CLOEXEC)); }
static inline int ckvm_create_vcpu(int fd, unsigned long id) { return ckvm_result(ioctl(fd, KVM_CREATE_VCPU, id)); }
static inline int ckvm_get_clock(int fd, struct kvm_clock_data *d) { return ckvm_result(ioctl(fd, KVM_GET_CLOCK, d)); }
static inline int ckvm_set_clock(int fd, struct kvm_clock_data *d) { return ckvm_result(ioctl(fd, KVM_SET_CLOCK, d)); }
static inline int ckvm_enable_cap(int fd, uint32_t cap, uint64_t arg0) {
    struct kvm_enable_cap c; memset(&c, 0, sizeof c); c.cap = cap; c.args[0] = arg0;
    return ckvm_result(ioctl(fd, KVM_ENABLE_CAP, &c));
}

// --- vCPU ---
static inline int ckvm_run(int fd) { return ckvm_result(ioctl(fd, KVM_RUN, 0)); }
static inline int ckvm_get_regs(int fd, struct kvm_regs *r) { return ckvm_result(ioctl(fd, KVM_GET_REGS, r)); }
static inline int ckvm_set_regs(int fd, const struct kvm_regs *r) { return ckvm_result(ioctl(fd, KVM_SET_REGS, r)); }
static inline int ckvm_get_sregs(int fd, struct kvm_sregs *r) { return ckvm_result(ioctl(fd, KVM_GET_SREGS, r)); }
static inline int ckvm_set_sregs(int fd, const struct kvm_sregs *r) { return ckvm_result(ioctl(fd, KVM_SET_SREGS, r)); }
static inline int ckvm_get_fpu(int fd, struct kvm_fpu *f) { return ckvm_result(ioctl(fd, KVM_GET_FPU, f)); }
static inline int ckvm_set_fpu(int fd, const struct kvm_fpu *f) { return ckvm_result(ioctl(fd, KVM_SET_FPU, f)); }
static inline int ckvm_set_cpuid2(int fd, struct ckvm_cpuid *c) { return ckvm_result(ioctl(fd, KVM_SET_CPUID2, c)); }
static inline int ckvm_get_msrs(int fd, struct ckvm_msrs *m) { return ckvm_result(ioctl(fd, KVM_GET_MSRS, m)); }
static inline int ckvm_set_msrs(int fd, struct ckvm_msrs *m) { return ckvm_result(ioctl(fd, KVM_SET_MSRS, m)); }
static inline int ckvm_get_lapic(int fd, struct kvm_lapic_state *s) { return ckvm_result(ioctl(fd, KVM_GET_LAPIC, s)); }
static inline int ckvm_set_lapic(int fd, const struct kvm_lapic_state *s) { return ckvm_result(ioctl(fd, KVM_SET_LAPIC, s)); }
static inline int ckvm_get_vcpu_events(int fd, struct kvm_vcpu_events *e) { return ckvm_result(ioctl(fd, KVM_GET_VCPU_EVENTS, e)); }
static inline int ckvm_set_vcpu_events(int fd, const struct kvm_vcpu_events *e) { return ckvm_result(ioctl(fd, KVM_SET_VCPU_EVENTS, e)); }
static inline int ckvm_get_mp_state(int fd, struct kvm_mp_state *s) { return ckvm_result(ioctl(fd, KVM_GET_MP_STATE, s)); }
static inline int ckvm_set_mp_state(int fd, const struct kvm_mp_state *s) { return ckvm_result(ioctl(fd, KVM_SET_MP_STATE, s)); }
static inline int ckvm_get_tsc_khz(int fd) { return ckvm_result(ioctl(fd, KVM_GET_TSC_KHZ, 0)); }

/// Injects exception `vector` (with an optional error code) through KVM_SET_VCPU_EVENTS,
/// keeping every other pending event as KVM reported it.
static inline int ckvm_inject_exception(int fd, uint8_t vector, int has_error_code, uint32_t error_code) {
    struct kvm_vcpu_events e;
    int r = ckvm_get_vcpu_events(fd, &e);
    if (r < 0) return r;
    e.exception.injected = 1;
    e.exception.nr = vector;
    e.exception.has_error_code = has_error_code ? 1 : 0;
    e.exception.error_code = error_code;
    e.exception.pending = 0;
    e.flags = 0; // only the exception is being changed
    return ckvm_set_vcpu_events(fd, &e);
}

// --- kvm_run accessors (anonymous unions) ---
static inline uint32_t ckvm_run_exit_reason(const struct kvm_run *r) { return r->exit_reason; }
static inline void ckvm_run_set_immediate_exit(struct kvm_run *r, uint8_t v) { __atomic_store_n(&r->immediate_exit, v, __ATOMIC_SEQ_CST); }
static inline uint8_t ckvm_run_io_direction(const struct kvm_run *r) { return r->io.direction; }
static inline uint8_t ckvm_run_io_size(const struct kvm_run *r) { return r->io.size; }
static inline uint16_t ckvm_run_io_port(const struct kvm_run *r) { return r->io.port; }
static inline uint32_t ckvm_run_io_count(const struct kvm_run *r) { return r->io.count; }
static inline uint64_t ckvm_run_io_data_offset(const struct kvm_run *r) { return r->io.data_offset; }
static inline uint64_t ckvm_run_mmio_phys_addr(const struct kvm_run *r) { return r->mmio.phys_addr; }
static inline uint8_t *ckvm_run_mmio_data(struct kvm_run *r) { return r->mmio.data; }
static inline uint32_t ckvm_run_mmio_len(const struct kvm_run *r) { return r->mmio.len; }
static inline uint8_t ckvm_run_mmio_is_write(const struct kvm_run *r) { return r->mmio.is_write; }
static inline uint32_t ckvm_run_internal_suberror(const struct kvm_run *r) { return r->internal.suberror; }
static inline uint32_t ckvm_run_internal_ndata(const struct kvm_run *r) { return r->internal.ndata; }
static inline uint64_t ckvm_run_internal_data(const struct kvm_run *r, uint32_t i) { return i < 16 ? r->internal.data[i] : 0; }
static inline uint64_t ckvm_run_emulation_flags(const struct kvm_run *r) { return r->emulation_failure.flags; }
static inline uint8_t ckvm_run_emulation_insn_size(const struct kvm_run *r) { return r->emulation_failure.insn_size; }
static inline const uint8_t *ckvm_run_emulation_insn_bytes(const struct kvm_run *r) { return r->emulation_failure.insn_bytes; }
static inline uint32_t ckvm_run_system_event_type(const struct kvm_run *r) { return r->system_event.type; }
static inline uint64_t ckvm_run_fail_entry_reason(const struct kvm_run *r) { return r->fail_entry.hardware_entry_failure_reason; }

enum {
    CKVM_EXIT_UNKNOWN = KVM_EXIT_UNKNOWN, CKVM_EXIT_IO = KVM_EXIT_IO, CKVM_EXIT_HLT = KVM_EXIT_HLT,
    CKVM_EXIT_MMIO = KVM_EXIT_MMIO, CKVM_EXIT_SHUTDOWN = KVM_EXIT_SHUTDOWN, CKVM_EXIT_FAIL_ENTRY = KVM_EXIT_FAIL_ENTRY,
    CKVM_EXIT_INTR = KVM_EXIT_INTR, CKVM_EXIT_INTERNAL_ERROR = KVM_EXIT_INTERNAL_ERROR,
    CKVM_EXIT_SYSTEM_EVENT = KVM_EXIT_SYSTEM_EVENT, CKVM_EXIT_IRQ_WINDOW_OPEN = KVM_EXIT_IRQ_WINDOW_OPEN,
    CKVM_EXIT_DEBUG = KVM_EXIT_DEBUG, CKVM_EXIT_EXCEPTION = KVM_EXIT_EXCEPTION,
    CKVM_INTERNAL_ERROR_EMULATION = KVM_INTERNAL_ERROR_EMULATION,
    CKVM_EMULATION_FLAG_INSTRUCTION_BYTES = KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES,
    CKVM_IO_OUT = KVM_EXIT_IO_OUT,
    CKVM_API_VERSION = KVM_API_VERSION,
    CKVM_CAP_IRQCHIP = KVM_CAP_IRQCHIP, CKVM_CAP_USER_MEMORY = KVM_CAP_USER_MEMORY, CKVM_CAP_PIT2 = KVM_CAP_PIT2,
    CKVM_CAP_IMMEDIATE_EXIT = KVM_CAP_IMMEDIATE_EXIT, CKVM_CAP_SET_TSS_ADDR = KVM_CAP_SET_TSS_ADDR,
    CKVM_CAP_MAX_VCPUS = KVM_CAP_MAX_VCPUS, CKVM_CAP_NR_VCPUS = KVM_CAP_NR_VCPUS,
    CKVM_CAP_EXIT_ON_EMULATION_FAILURE = KVM_CAP_EXIT_ON_EMULATION_FAILURE,
    CKVM_CAP_TSC_CONTROL = KVM_CAP_TSC_CONTROL, CKVM_CAP_GET_TSC_KHZ = KVM_CAP_GET_TSC_KHZ,
    CKVM_CAP_X86_DISABLE_EXITS = KVM_CAP_X86_DISABLE_EXITS,
    CKVM_CAP_IRQFD = KVM_CAP_IRQFD, CKVM_CAP_IOEVENTFD = KVM_CAP_IOEVENTFD,
    CKVM_CAP_TSC_DEADLINE_TIMER = KVM_CAP_TSC_DEADLINE_TIMER,
    CKVM_IRQFD_FLAG_DEASSIGN = KVM_IRQFD_FLAG_DEASSIGN,
    CKVM_PIT_SPEAKER_DUMMY = KVM_PIT_SPEAKER_DUMMY,
    CKVM_MP_STATE_RUNNABLE = KVM_MP_STATE_RUNNABLE, CKVM_MP_STATE_UNINITIALIZED = KVM_MP_STATE_UNINITIALIZED,
    CKVM_MP_STATE_INIT_RECEIVED = KVM_MP_STATE_INIT_RECEIVED, CKVM_MP_STATE_HALTED = KVM_MP_STATE_HALTED,
    CKVM_MP_STATE_SIPI_RECEIVED = KVM_MP_STATE_SIPI_RECEIVED,
    CKVM_SYSTEM_EVENT_SHUTDOWN = KVM_SYSTEM_EVENT_SHUTDOWN, CKVM_SYSTEM_EVENT_RESET = KVM_SYSTEM_EVENT_RESET,
    CKVM_SYSTEM_EVENT_CRASH = KVM_SYSTEM_EVENT_CRASH,
};


// --- opaque state blobs for snapshots: same host, same struct layouts, so raw bytes suffice ---
enum ckvm_vcpu_state_kind {
    CKVM_VCPU_REGS = 0, CKVM_VCPU_SREGS, CKVM_VCPU_FPU, CKVM_VCPU_XSAVE, CKVM_VCPU_XCRS, CKVM_VCPU_LAPIC,
    CKVM_VCPU_EVENTS, CKVM_VCPU_MP_STATE, CKVM_VCPU_DEBUGREGS, CKVM_VCPU_STATE_KINDS
};

static inline long ckvm_vcpu_state_size(int kind) {
    switch (kind) {
    case CKVM_VCPU_REGS: return sizeof(struct kvm_regs);
    case CKVM_VCPU_SREGS: return sizeof(struct kvm_sregs);
    case CKVM_VCPU_FPU: return sizeof(struct kvm_fpu);
    case CKVM_VCPU_XSAVE: return sizeof(struct kvm_xsave);
    case CKVM_VCPU_XCRS: return sizeof(struct kvm_xcrs);
    case CKVM_VCPU_LAPIC: return sizeof(struct kvm_lapic_state);
    case CKVM_VCPU_EVENTS: return sizeof(struct kvm_vcpu_events);
    case CKVM_VCPU_MP_STATE: return sizeof(struct kvm_mp_state);
    case CKVM_VCPU_DEBUGREGS: return sizeof(struct kvm_debugregs);
    default: return -1;
    }
}

static inline int ckvm_vcpu_get_state(int fd, int kind, void *buffer) {
    switch (kind) {
    case CKVM_VCPU_REGS: return ckvm_result(ioctl(fd, KVM_GET_REGS, buffer));
    case CKVM_VCPU_SREGS: return ckvm_result(ioctl(fd, KVM_GET_SREGS, buffer));
    case CKVM_VCPU_FPU: return ckvm_result(ioctl(fd, KVM_GET_FPU, buffer));
    case CKVM_VCPU_XSAVE: return ckvm_result(ioctl(fd, KVM_GET_XSAVE, buffer));
    case CKVM_VCPU_XCRS: return ckvm_result(ioctl(fd, KVM_GET_XCRS, buffer));
    case CKVM_VCPU_LAPIC: return ckvm_result(ioctl(fd, KVM_GET_LAPIC, buffer));
    case CKVM_VCPU_EVENTS: return ckvm_result(ioctl(fd, KVM_GET_VCPU_EVENTS, buffer));
    case CKVM_VCPU_MP_STATE: return ckvm_result(ioctl(fd, KVM_GET_MP_STATE, buffer));
    case CKVM_VCPU_DEBUGREGS: return ckvm_result(ioctl(fd, KVM_GET_DEBUGREGS, buffer));
    default: return -EINVAL;
    }
}

static inline int ckvm_vcpu_set_state(int fd, int kind, void *buffer) {
    switch (kind) {
    case CKVM_VCPU_REGS: return ckvm_result(ioctl(fd, KVM_SET_REGS, buffer));
    case CKVM_VCPU_SREGS: return ckvm_result(ioctl(fd, KVM_SET_SREGS, buffer));
    case CKVM_VCPU_FPU: return ckvm_result(ioctl(fd, KVM_SET_FPU, buffer));
    case CKVM_VCPU_XSAVE: return ckvm_result(ioctl(fd, KVM_SET_XSAVE, buffer));
    case CKVM_VCPU_XCRS: return ckvm_result(ioctl(fd, KVM_SET_XCRS, buffer));
    case CKVM_VCPU_LAPIC: return ckvm_result(ioctl(fd, KVM_SET_LAPIC, buffer));
    case CKVM_VCPU_EVENTS: return ckvm_result(ioctl(fd, KVM_SET_VCPU_EVENTS, buffer));
    case CKVM_VCPU_MP_STATE: return ckvm_result(ioctl(fd, KVM_SET_MP_STATE, buffer));
    case CKVM_VCPU_DEBUGREGS: return ckvm_result(ioctl(fd, KVM_SET_DEBUGREGS, buffer));
    default: return -EINVAL;
    }
}

enum ckvm_vm_state_kind { CKVM_VM_PIC_MASTER = 0, CKVM_VM_PIC_SLAVE, CKVM_VM_IOAPIC, CKVM_VM_PIT, CKVM_VM_CLOCK, CKVM_VM_STATE_KINDS };

static inline long ckvm_vm_state_size(int kind) {
    switch (kind) {
    case CKVM_VM_PIC_MASTER: case CKVM_VM_PIC_SLAVE: case CKVM_VM_IOAPIC: return sizeof(struct kvm_irqchip);
    case CKVM_VM_PIT: return sizeof(struct kvm_pit_state2);
    case CKVM_VM_CLOCK: return sizeof(struct kvm_clock_data);
    default: return -1;
    }
}

static inline int ckvm_vm_get_state(int fd, int kind, void *buffer) {
    switch (kind) {
    case CKVM_VM_PIC_MASTER: case CKVM_VM_PIC_SLAVE: case CKVM_VM_IOAPIC:
        ((struct kvm_irqchip *)buffer)->chip_id = kind; // KVM_IRQCHIP_PIC_MASTER=0, PIC_SLAVE=1, IOAPIC=2
        return ckvm_result(ioctl(fd, KVM_GET_IRQCHIP, buffer));
    case CKVM_VM_PIT: return ckvm_result(ioctl(fd, KVM_GET_PIT2, buffer));
    case CKVM_VM_CLOCK: return ckvm_result(ioctl(fd, KVM_GET_CLOCK, buffer));
    default: return -EINVAL;
    }
}

static inline int ckvm_vm_set_state(int fd, int kind, void *buffer) {
    switch (kind) {
    case CKVM_VM_PIC_MASTER: case CKVM_VM_PIC_SLAVE: case CKVM_VM_IOAPIC:
        return ckvm_result(ioctl(fd, KVM_SET_IRQCHIP, buffer));
    case CKVM_VM_PIT: return ckvm_result(ioctl(fd, KVM_SET_PIT2, buffer));
    case CKVM_VM_CLOCK: {
        struct kvm_clock_data *d = buffer;
        d->flags = 0; // only the clock value is restored
        return ckvm_result(ioctl(fd, KVM_SET_CLOCK, d));
    }
    default: return -EINVAL;
    }
}

struct ckvm_msr_list {
    __u32 nmsrs;
    __u32 indices[512];
};

static inline int ckvm_get_msr_index_list(int fd, struct ckvm_msr_list *list) {
    list->nmsrs = 512;
    return ckvm_result(ioctl(fd, KVM_GET_MSR_INDEX_LIST, list));
}

#endif
