// Bodies for csystem.h, compiled with _GNU_SOURCE (setresuid, unshare, CPU_SET, pivot_root).
#define _GNU_SOURCE
#include "csystem.h"

#include <errno.h>
#include <grp.h>
#include <nss.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <asm/ioctls.h>
#include <linux/capability.h>
#include <linux/kvm.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <sys/sysmacros.h>

static int result(long r) { return r < 0 ? -errno : (int)r; }

// --- seccomp ---

int csys_seccomp_install(const struct csys_bpf_insn *program, unsigned short count, int tsync) {
    _Static_assert(sizeof(struct csys_bpf_insn) == sizeof(struct sock_filter), "sock_filter layout");
    struct sock_fprog fprog = { .len = count, .filter = (struct sock_filter *)program };
    unsigned int flags = tsync ? SECCOMP_FILTER_FLAG_TSYNC : 0;
    long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog);
    // With TSYNC a positive result is the id of a thread that could not be synchronised.
    if (r > 0) return -EAGAIN;
    return result(r);
}

int csys_seccomp_mode(void) { return result(prctl(PR_GET_SECCOMP, 0, 0, 0, 0)); }
int csys_set_no_new_privs(void) { return result(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)); }
int csys_no_new_privs(void) { return result(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)); }

int csys_user_database_files_only(void) {
    if (__nss_configure_lookup("passwd", "files") != 0) return -1;
    return __nss_configure_lookup("group", "files") != 0 ? -1 : 0;
}

static __thread const char *thread_role;

void csys_set_thread_role(const char *role) { thread_role = role; }

static size_t append(char *buffer, size_t used, size_t capacity, const char *text) {
    while (*text && used + 1 < capacity) buffer[used++] = *text++;
    return used;
}

static size_t append_hex(char *buffer, size_t used, size_t capacity, unsigned long value) {
    char digits[20];
    int count = 0;
    do { digits[count++] = "0123456789abcdef"[value & 15]; value >>= 4; } while (value && count < 19);
    used = append(buffer, used, capacity, "0x");
    while (count > 0 && used + 1 < capacity) buffer[used++] = digits[--count];
    return used;
}

static size_t append_number(char *buffer, size_t used, size_t capacity, long value) {
    char digits[24];
    int count = 0;
    unsigned long magnitude = value < 0 ? (unsigned long)(-value) : (unsigned long)value;
    do { digits[count++] = (char)('0' + magnitude % 10); magnitude /= 10; } while (magnitude && count < 23);
    if (value < 0 && used + 1 < capacity) buffer[used++] = '-';
    while (count > 0 && used + 1 < capacity) buffer[used++] = digits[--count];
    return used;
}

// Writes `length` bytes to stderr with raw write(2) calls (async-signal-safe), giving up on an error.
static void write_all_stderr(const char *bytes, size_t length) {
    while (length > 0) {
        long written = syscall(SYS_write, 2, bytes, length);
        if (written <= 0) return;
        bytes += written;
        length -= (size_t)written;
    }
}

// Async-signal-safe: only write(2) and exit_group(2), no allocation, no locks.
static void sigsys_reporter(int signal, siginfo_t *info, void *context) {
    (void)signal;
    int nr = info->si_syscall;
    const ucontext_t *state = context;
    const char *name = csys_syscall_name(nr);
    char line[200];
    size_t used = 0;
    used = append(line, used, sizeof line, "vireo: seccomp denied syscall ");
    used = append(line, used, sizeof line, name ? name : "unknown");
    used = append(line, used, sizeof line, " (nr ");
    used = append_number(line, used, sizeof line, nr);
    if (nr == SYS_ioctl && state) {  // which request: the second argument, in RSI
        used = append(line, used, sizeof line, ", request ");
        used = append_hex(line, used, sizeof line, (unsigned long)state->uc_mcontext.gregs[REG_RSI] & 0xffffffffUL);
    }
    used = append(line, used, sizeof line, ") in the ");
    used = append(line, used, sizeof line, thread_role ? thread_role : "control");
    used = append(line, used, sizeof line, " thread; the VMM is stopped\n");
    write_all_stderr(line, used);
    syscall(SYS_exit_group, 128 + SIGSYS);
}

int csys_install_sigsys_reporter(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = sigsys_reporter;
    action.sa_flags = SA_SIGINFO;
    sigfillset(&action.sa_mask);
    return result(sigaction(SIGSYS, &action, 0));
}

// A Swift runtime trap (overflow, bounds check, fatalError, force-unwrap of nil) or a memory
// fault. Swift's own crash handler spawns its backtracer, which the seccomp filter denies: the
// VMM then died of SIGSYS (status 159) with no word of the crash. This handler names it instead.
// Async-signal-safe: only write(2) and exit_group(2), like the SIGSYS reporter.
static void crash_reporter(int signal, siginfo_t *info, void *context) {
    (void)context;
    const char *what;
    switch (signal) {
    case SIGILL: what = "SIGILL: a Swift runtime trap (overflow, bounds check, fatalError, nil unwrap) or an illegal instruction"; break;
    case SIGTRAP: what = "SIGTRAP: a Swift runtime trap"; break;
    case SIGSEGV: what = "SIGSEGV: invalid memory access"; break;
    case SIGBUS: what = "SIGBUS: bus error (a truncated mapped file?)"; break;
    case SIGFPE: what = "SIGFPE: arithmetic fault"; break;
    case SIGABRT: what = "SIGABRT: aborted"; break;
    default: what = "a fatal signal"; break;
    }
    char line[400];
    size_t used = 0;
    used = append(line, used, sizeof line, "vireo: the VMM crashed: ");
    used = append(line, used, sizeof line, what);
    if (signal == SIGSEGV || signal == SIGBUS) {
        used = append(line, used, sizeof line, " at ");
        used = append_hex(line, used, sizeof line, (unsigned long)info->si_addr);
    }
    used = append(line, used, sizeof line, ", in the ");
    used = append(line, used, sizeof line, thread_role ? thread_role : "control");
    used = append(line, used, sizeof line, " thread; a Swift message above names the cause if there was one"
                                           " (run with --seccomp off for a backtrace)\n");
    write_all_stderr(line, used);
    syscall(SYS_exit_group, 128 + signal);
}

int csys_install_crash_reporter(void) {
    static const int signals[] = { SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGFPE, SIGABRT };
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = crash_reporter;
    action.sa_flags = SA_SIGINFO | SA_RESETHAND;
    sigfillset(&action.sa_mask);
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        if (sigaction(signals[i], &action, 0) != 0) return -errno;
    }
    return 0;
}

// --- ioctl requests by name ---

#define IOCTL(name) { #name, (uint32_t)(name) }
static const struct csys_ioctl ioctls[] = {
    IOCTL(KVM_RUN), IOCTL(KVM_GET_REGS), IOCTL(KVM_SET_REGS), IOCTL(KVM_GET_SREGS), IOCTL(KVM_SET_SREGS),
    IOCTL(KVM_GET_FPU), IOCTL(KVM_SET_FPU), IOCTL(KVM_GET_XSAVE), IOCTL(KVM_SET_XSAVE), IOCTL(KVM_GET_XCRS),
    IOCTL(KVM_SET_XCRS), IOCTL(KVM_GET_LAPIC), IOCTL(KVM_SET_LAPIC), IOCTL(KVM_GET_VCPU_EVENTS),
    IOCTL(KVM_SET_VCPU_EVENTS), IOCTL(KVM_GET_MP_STATE), IOCTL(KVM_SET_MP_STATE), IOCTL(KVM_GET_DEBUGREGS),
    IOCTL(KVM_SET_DEBUGREGS), IOCTL(KVM_GET_MSRS), IOCTL(KVM_SET_MSRS), IOCTL(KVM_GET_MSR_INDEX_LIST),
    IOCTL(KVM_SET_CPUID2), IOCTL(KVM_GET_TSC_KHZ), IOCTL(KVM_IRQ_LINE), IOCTL(KVM_GET_IRQCHIP),
    IOCTL(KVM_SET_IRQCHIP), IOCTL(KVM_GET_PIT2), IOCTL(KVM_SET_PIT2), IOCTL(KVM_GET_CLOCK), IOCTL(KVM_SET_CLOCK),
    IOCTL(KVM_CHECK_EXTENSION), IOCTL(KVM_GET_API_VERSION), IOCTL(KVM_CREATE_VM), IOCTL(KVM_CREATE_VCPU),
    IOCTL(KVM_GET_VCPU_MMAP_SIZE), IOCTL(KVM_GET_SUPPORTED_CPUID), IOCTL(KVM_SET_USER_MEMORY_REGION),
    IOCTL(KVM_CREATE_IRQCHIP), IOCTL(KVM_CREATE_PIT2), IOCTL(KVM_SET_TSS_ADDR), IOCTL(KVM_SET_IDENTITY_MAP_ADDR),
    IOCTL(KVM_ENABLE_CAP), IOCTL(KVM_IOEVENTFD),
    IOCTL(TCGETS), IOCTL(TCSETS), IOCTL(TCSETSW), IOCTL(TCSETSF), IOCTL(TIOCGWINSZ), IOCTL(FIONBIO),
    IOCTL(FIONREAD),
};

const struct csys_ioctl *csys_ioctl_table(int *count) {
    *count = (int)(sizeof ioctls / sizeof ioctls[0]);
    return ioctls;
}

// --- threads and processes ---

pid_t csys_gettid(void) { return (pid_t)syscall(SYS_gettid); }
int csys_set_thread_name(const char *name) { return result(prctl(PR_SET_NAME, name, 0, 0, 0)); }
int csys_set_parent_death_signal(int signal) { return result(prctl(PR_SET_PDEATHSIG, signal, 0, 0, 0)); }
pid_t csys_fork(void) { return fork(); }

int csys_set_affinity(const int *cpus, int count) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < count; i++) {
        if (cpus[i] < 0 || cpus[i] >= CPU_SETSIZE) return -EINVAL;
        CPU_SET(cpus[i], &set);
    }
    return result(sched_setaffinity(0, sizeof set, &set));
}

int csys_get_affinity(pid_t tid, int *cpus, int capacity) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(tid, sizeof set, &set) != 0) return -errno;
    int count = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && count < capacity; cpu++) {
        if (CPU_ISSET(cpu, &set)) cpus[count++] = cpu;
    }
    return count;
}

static volatile pid_t forward_target;

static void forward_signal(int signal) {
    pid_t target = forward_target;
    if (target > 0) kill(target, signal);
}

int csys_forward_stop_signals(pid_t child) {
    forward_target = child;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = forward_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    /* The stop signals, and those `--snapshot-on` may name. */
    int signals[] = { SIGINT, SIGTERM, SIGHUP, SIGUSR2, SIGQUIT };
    for (unsigned i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        if (sigaction(signals[i], &action, 0) != 0) return -errno;
    }
    sigset_t set;
    sigemptyset(&set);
    for (unsigned i = 0; i < sizeof signals / sizeof signals[0]; i++) sigaddset(&set, signals[i]);
    return result(sigprocmask(SIG_UNBLOCK, &set, 0));
}

#ifdef DEBUG  // the test hooks' raw syscall (TestHooks.swift); a release build has none
long csys_raw_syscall(long nr, long a0, long a1, long a2, long a3, long a4, long a5) {
    long r = syscall(nr, a0, a1, a2, a3, a4, a5);
    return r < 0 ? -errno : r;
}
#endif

// --- namespaces, mounts, credentials, capabilities ---

_Static_assert(CSYS_CLONE_NEWNS == CLONE_NEWNS && CSYS_CLONE_NEWUTS == CLONE_NEWUTS && CSYS_CLONE_NEWIPC == CLONE_NEWIPC
               && CSYS_CLONE_NEWPID == CLONE_NEWPID && CSYS_CLONE_NEWNET == CLONE_NEWNET, "clone flags");

int csys_unshare(int flags) { return result(unshare(flags)); }

int csys_setns(int fd, int nstype) { return result(setns(fd, nstype)); }

int csys_mount(const char *source, const char *target, const char *type, unsigned long flags, const char *data) {
    return result(mount(source, target, type, flags, data));
}

int csys_make_mounts_private(void) { return result(mount(0, "/", 0, MS_REC | MS_PRIVATE, 0)); }

int csys_bind_mount(const char *source, const char *target, int read_only) {
    if (mount(source, target, 0, MS_BIND, 0) != 0) return -errno;
    unsigned long flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | MS_NOEXEC | (read_only ? MS_RDONLY : 0);
    return result(mount(0, target, 0, flags, 0));
}

int csys_mount_tmpfs(const char *target, const char *options) {
    return result(mount("vireo-jail", target, "tmpfs", MS_NOSUID, options));
}

int csys_remount_read_only(const char *target) {
    return result(mount(0, target, 0, MS_REMOUNT | MS_RDONLY | MS_NOSUID, 0));
}

int csys_pivot_root(const char *new_root, const char *put_old) { return result(syscall(SYS_pivot_root, new_root, put_old)); }
int csys_umount_detach(const char *target) { return result(umount2(target, MNT_DETACH)); }

int csys_mknod_char(const char *path, unsigned mode, unsigned major, unsigned minor) {
    return result(mknod(path, S_IFCHR | (mode & 07777), makedev(major, minor)));
}

unsigned csys_dev_major(uint64_t rdev) { return major((dev_t)rdev); }
unsigned csys_dev_minor(uint64_t rdev) { return minor((dev_t)rdev); }

int csys_sethostname(const char *name) { return result(sethostname(name, strlen(name))); }

int csys_switch_user(uid_t uid, gid_t gid) {
    gid_t groups[1] = { gid };
    if (setgroups(1, groups) != 0) return -errno;
    if (setresgid(gid, gid, gid) != 0) return -errno;
    return result(setresuid(uid, uid, uid));
}

int csys_drop_bounding_set(void) {
    for (int cap = 0; cap <= 63; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
            if (errno == EINVAL) break;  // past the kernel's last capability
            return -errno;               // EPERM: no CAP_SETPCAP (not running as root)
        }
    }
    return 0;
}

int csys_clear_capabilities(void) {
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return -errno;
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    return result(syscall(SYS_capset, &header, data));
}

long long csys_effective_capabilities(void) {
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &header, data) != 0) return -errno;
    return (long long)(((unsigned long long)data[1].effective << 32) | data[0].effective);
}

