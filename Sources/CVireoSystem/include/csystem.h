// C shim for VMM isolation: seccomp, prctl, namespaces, mounts, credentials, capabilities, CPU
// affinity and the SIGSYS reporter. Swift cannot call variadic C (prctl, syscall) or use the
// CPU_SET/makedev macros, and some calls need _GNU_SOURCE, so the bodies live in csystem.c and
// this header declares plain functions (returning 0 or -errno) and constants.
// CKVM stays KVM-only; this module has nothing to do with /dev/kvm except ioctl request numbers
// for seccomp argument filters (csys_ioctl_table).
#ifndef CSYSTEM_H
#define CSYSTEM_H

#include <stdint.h>
#include <sys/types.h>
#include <linux/seccomp.h>
#include <linux/filter.h>
#include <linux/audit.h>

// --- constants Swift cannot import from the macros ---
static const uint32_t CSYS_AUDIT_ARCH_X86_64 = AUDIT_ARCH_X86_64;
static const uint32_t CSYS_SECCOMP_RET_KILL_PROCESS = SECCOMP_RET_KILL_PROCESS;
static const uint32_t CSYS_SECCOMP_RET_TRAP = SECCOMP_RET_TRAP;
static const uint32_t CSYS_SECCOMP_RET_ERRNO = SECCOMP_RET_ERRNO;
static const uint32_t CSYS_SECCOMP_RET_LOG = SECCOMP_RET_LOG;
static const uint32_t CSYS_SECCOMP_RET_ALLOW = SECCOMP_RET_ALLOW;
static const uint32_t CSYS_SECCOMP_FILTER_FLAG_TSYNC = SECCOMP_FILTER_FLAG_TSYNC;
static const uint16_t CSYS_BPF_LD_W_ABS = BPF_LD | BPF_W | BPF_ABS;
static const uint16_t CSYS_BPF_JEQ_K = BPF_JMP | BPF_JEQ | BPF_K;
static const uint16_t CSYS_BPF_JGE_K = BPF_JMP | BPF_JGE | BPF_K;
static const uint16_t CSYS_BPF_JSET_K = BPF_JMP | BPF_JSET | BPF_K;
static const uint16_t CSYS_BPF_JA = BPF_JMP | BPF_JA;
static const uint16_t CSYS_BPF_RET_K = BPF_RET | BPF_K;
static const uint16_t CSYS_BPF_AND_K = BPF_ALU | BPF_AND | BPF_K;
static const uint32_t CSYS_BPF_MAXINSNS = BPF_MAXINSNS;

/// One classic BPF instruction; same layout as struct sock_filter.
struct csys_bpf_insn {
    uint16_t code;
    uint8_t jt;
    uint8_t jf;
    uint32_t k;
};

// --- seccomp ---
/// Installs a seccomp filter on the calling thread (all threads with `tsync`); 0 or -errno.
int csys_seccomp_install(const struct csys_bpf_insn *program, unsigned short count, int tsync);
/// PR_GET_SECCOMP for the calling thread: 0 none, 2 filter.
int csys_seccomp_mode(void);
/// PR_SET_NO_NEW_PRIVS=1; 0 or -errno.
int csys_set_no_new_privs(void);
/// PR_GET_NO_NEW_PRIVS.
int csys_no_new_privs(void);
/// Makes getpwnam/getgrnam and friends read /etc/passwd and /etc/group only (glibc's built-in
/// "files" service). The static vireo-vmm calls it first thing: a statically linked glibc would
/// otherwise dlopen nsswitch.conf's other modules (libnss_systemd …), which crash a static
/// process. 0 or -1.
int csys_user_database_files_only(void);
/// Installs the SIGSYS handler that reports a seccomp denial (syscall name and number, thread role)
/// on stderr with write(2) and ends the process with exit_group(159); 0 or -errno.
int csys_install_sigsys_reporter(void);
/// Names a crash (SIGILL/SIGTRAP/SIGSEGV/SIGBUS/SIGFPE/SIGABRT) and its thread on stderr, then
/// exits 128+signal: under seccomp, Swift's backtracer cannot run. 0 or -errno.
int csys_install_crash_reporter(void);
/// Records the calling thread's role name for the SIGSYS report (the pointer must stay valid).
void csys_set_thread_role(const char *role);

// --- syscall and ioctl tables ---
/// Number of entries in the syscall name table (highest number + 1).
int csys_syscall_count(void);
/// The syscall's name, or NULL for a number the table does not know.
const char *csys_syscall_name(int nr);
/// One ioctl request a policy may name.
struct csys_ioctl { const char *name; uint32_t request; };
/// KVM and terminal ioctl requests by name.
const struct csys_ioctl *csys_ioctl_table(int *count);

// --- threads and processes ---
pid_t csys_gettid(void);
/// PR_SET_NAME for the calling thread (at most 15 bytes are kept); 0 or -errno.
int csys_set_thread_name(const char *name);
/// PR_SET_PDEATHSIG; 0 or -errno.
int csys_set_parent_death_signal(int signal);
/// fork(2); the child gets 0.
pid_t csys_fork(void);
/// Sets the calling thread's CPU affinity to `cpus`; 0 or -errno.
int csys_set_affinity(const int *cpus, int count);
/// Writes the CPUs thread `tid` (0: caller) may run on into `cpus`; returns how many, or -errno.
int csys_get_affinity(pid_t tid, int *cpus, int capacity);
/// For the supervisor: SIGINT, SIGTERM and SIGHUP are forwarded to `child`; 0 or -errno.
int csys_forward_stop_signals(pid_t child);
/// A raw syscall (test hooks only).
/// Defined in debug builds only: a release binary has no raw-syscall entry point.
long csys_raw_syscall(long nr, long a0, long a1, long a2, long a3, long a4, long a5);

// --- namespaces, mounts, credentials, capabilities ---
static const int CSYS_CLONE_NEWNS = 0x00020000;
static const int CSYS_CLONE_NEWUTS = 0x04000000;
static const int CSYS_CLONE_NEWIPC = 0x08000000;
static const int CSYS_CLONE_NEWPID = 0x20000000;
static const int CSYS_CLONE_NEWNET = 0x40000000;
int csys_unshare(int flags);
/// Joins the namespace `fd` refers to (setns(2)); 0 or -errno.
int csys_setns(int fd, int nstype);
int csys_mount(const char *source, const char *target, const char *type, unsigned long flags, const char *data);
/// Makes every mount in this namespace private (no propagation to or from the host).
int csys_make_mounts_private(void);
/// Bind-mounts `source` on `target`, then remounts it nosuid,nodev,noexec (and read-only if asked).
int csys_bind_mount(const char *source, const char *target, int read_only);
/// Mounts a small tmpfs (mode 0755) at `target`.
int csys_mount_tmpfs(const char *target, const char *options);
/// Remounts the tmpfs at `target` read-only.
int csys_remount_read_only(const char *target);
int csys_pivot_root(const char *new_root, const char *put_old);
int csys_umount_detach(const char *target);
/// mknod of a character device.
int csys_mknod_char(const char *path, unsigned mode, unsigned major, unsigned minor);
/// major/minor of a device node's st_rdev.
unsigned csys_dev_major(uint64_t rdev);
unsigned csys_dev_minor(uint64_t rdev);
int csys_sethostname(const char *name);
/// setgroups([gid]), setresgid(gid), setresuid(uid); 0 or -errno.
int csys_switch_user(uid_t uid, gid_t gid);
/// Empties the bounding set (PR_CAPBSET_DROP for every capability; needs CAP_SETPCAP); 0 or -errno.
int csys_drop_bounding_set(void);
/// Clears the ambient set, then effective, permitted and inheritable (capset with zero sets); 0 or -errno.
int csys_clear_capabilities(void);
/// The calling thread's effective capability mask (low 64 bits), or -errno.
long long csys_effective_capabilities(void);


#endif
