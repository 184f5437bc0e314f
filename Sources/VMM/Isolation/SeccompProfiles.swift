#if canImport(Glibc)
import Glibc
#endif

extension SeccompMode {
    /// What the filters return for a syscall outside the allowlist.
    public var denyAction: SeccompAction? {
        switch self {
        case .on: return .trap
        case .kill: return .killProcess
        case .log: return .log
        case .off: return nil
        }
    }
}

/// The thread roles' allowlists (issues 6 and 11): control (main, signal, API, log-rotation and
/// vsock-connector threads: the process-wide base every thread inherits), vCPU (exit loop and
/// in-line device emulation), device (virtio workers) and device I/O (console input). A thread's effective policy is the intersection of the base
/// and its own, because seccomp filters stack.
///
/// The lists were found by running the test suite (micro-guests, Linux boots, snapshots, the
/// control socket) under `strace -f` and `--seccomp=log`; see docs/isolation.md.
public enum SeccompProfiles {
    /// KVM requests used after the guest starts, by anyone (pause/resume, snapshots, stop diagnostics,
    /// `vireo-srcu`'s `expediteGracePeriods`).
    static let controlIoctls = [
        "KVM_IOEVENTFD", "KVM_RUN", "KVM_GET_REGS", "KVM_SET_REGS", "KVM_GET_SREGS", "KVM_SET_SREGS", "KVM_SET_VCPU_EVENTS",
        "KVM_IRQ_LINE", "KVM_GET_CLOCK", "KVM_SET_CLOCK", "KVM_GET_FPU", "KVM_GET_XSAVE", "KVM_GET_XCRS",
        "KVM_GET_LAPIC", "KVM_GET_VCPU_EVENTS", "KVM_GET_MP_STATE", "KVM_GET_DEBUGREGS", "KVM_GET_MSRS",
        "KVM_GET_MSR_INDEX_LIST", "KVM_GET_IRQCHIP", "KVM_GET_PIT2", "KVM_GET_TSC_KHZ", "KVM_CHECK_EXTENSION",
        "TCGETS", "TCSETS", "TCSETSW", "TCSETSF", "TIOCGWINSZ",
    ]
    /// What a vCPU's exit loop needs: run, the instruction fallback (registers; exception
    /// injection reads then writes the vCPU events), and device interrupts.
    static let vcpuIoctls = [
        "KVM_RUN", "KVM_GET_REGS", "KVM_SET_REGS", "KVM_GET_SREGS", "KVM_SET_SREGS", "KVM_GET_VCPU_EVENTS",
        "KVM_SET_VCPU_EVENTS", "KVM_IRQ_LINE",
    ]
    /// The console input thread only raises the UART's interrupt.
    static let deviceIoctls = ["KVM_IRQ_LINE"]

    static let protExec = UInt32(PROT_EXEC)
    static let cloneThread: UInt32 = 0x0001_0000  // CLONE_THREAD
    static let prSetName: UInt32 = 15             // PR_SET_NAME
    static let seccompSetModeFilter: UInt32 = 1   // SECCOMP_SET_MODE_FILTER

    /// Memory management without ever making memory executable.
    static var memory: [SyscallRule] {
        [
            SyscallRule("mmap", when: [[.bitsClear(argument: 2, mask: protExec)]]),
            SyscallRule("mprotect", when: [[.bitsClear(argument: 2, mask: protExec)]]),
            SyscallRule("munmap"), SyscallRule("madvise"), SyscallRule("mremap"), SyscallRule("brk"),
        ]
    }

    /// Locks, thread bookkeeping, time, signals every thread may use; `pid` is the VMM's own pid.
    static func runtime(pid: Int32) -> [SyscallRule] {
        [
            SyscallRule("futex"), SyscallRule("gettid"), SyscallRule("getpid"), SyscallRule("sched_yield"),
            SyscallRule("tgkill", when: [[.equals(argument: 0, value: UInt32(bitPattern: pid))]]),
            SyscallRule("rt_sigreturn"), SyscallRule("rt_sigprocmask"), SyscallRule("restart_syscall"),
            SyscallRule("clock_gettime"), SyscallRule("clock_nanosleep"), SyscallRule("nanosleep"),
            SyscallRule("gettimeofday"), SyscallRule("exit"), SyscallRule("exit_group"),
        ]
    }

    /// The policy of `role` for these inputs (`helpers` and `hostConnects` matter to `control` only).
    static func policy(_ role: SeccompRole, pid: Int32, helpers: [Int32], hostConnects: Bool,
                       deny: SeccompAction) throws(SeccompPolicyError) -> SeccompPolicy {
        switch role {
        case .control: try control(pid: pid, helpers: helpers, hostConnects: hostConnects, deny: deny)
        case .vcpu: try vcpu(pid: pid, deny: deny)
        case .deviceIO: try deviceIO(pid: pid, deny: deny)
        case .device: try device(pid: pid, deny: deny)
        }
    }

    /// The base policy every VMM thread runs under (main thread, signal watcher, API server).
    /// `helpers` are the VMM's own child processes (passt for `--net user`): the VMM may signal and
    /// reap those, and no other process. `hostConnects`: the VM has a vsock device, whose
    /// guest-initiated streams connect to the host's `PATH_PORT` sockets; without one, nothing in
    /// the VMM connects after start-up and `connect` is denied. (It cannot be narrowed to a socket
    /// directory here: seccomp cannot read the path. The jail does that: a jailed VMM sees only its
    /// mirrored per-VM directories, the vsock socket's among them.)
    public static func control(pid: Int32, helpers: [Int32] = [], hostConnects: Bool = true,
                               deny: SeccompAction) throws(SeccompPolicyError) -> SeccompPolicy {
        let ownPIDs = ([pid] + helpers).map { UInt32(bitPattern: $0) }
        let rules: [SyscallRule] = [
            SyscallRule("ioctl", when: [[.oneOf(argument: 1, values: try IoctlRequests.values(controlIoctls))]]),
            SyscallRule("write"), SyscallRule("read"),
        ] + memory + runtime(pid: pid) + [
            SyscallRule("writev"), SyscallRule("readv"), SyscallRule("pread64"), SyscallRule("pwrite64"),
            SyscallRule("lseek"), SyscallRule("close"), SyscallRule("fstat"), SyscallRule("newfstatat"),
            SyscallRule("statx"), SyscallRule("openat"), SyscallRule("fsync"), SyscallRule("fdatasync"),
            SyscallRule("ftruncate"), SyscallRule("fcntl"), SyscallRule("rename"), SyscallRule("renameat"),
            SyscallRule("renameat2"), SyscallRule("unlink"), SyscallRule("unlinkat"), SyscallRule("mkdir"),
            SyscallRule("mkdirat"), SyscallRule("chmod"), SyscallRule("fchmod"), SyscallRule("mincore"),
            SyscallRule("poll"), SyscallRule("ppoll"), SyscallRule("getrusage"), SyscallRule("getrandom"),
            // A snapshot target that exists must be an empty directory of the VMM's own user.
            SyscallRule("getdents64"), SyscallRule("geteuid"),
            // The control socket is a Unix socket; nothing else may be created.
            SyscallRule("socket", when: [[.equals(argument: 0, value: UInt32(AF_UNIX))]]),
            SyscallRule("bind"), SyscallRule("listen"), SyscallRule("accept"), SyscallRule("accept4"),
            SyscallRule("recvfrom"), SyscallRule("recvmsg"), SyscallRule("sendto"), SyscallRule("sendmsg"),
            SyscallRule("shutdown"),
        ] + (hostConnects ? [SyscallRule("connect")] : []) + [
            // Virtio device workers (started with the guest): epoll over queue notifiers and backends,
            // eventfds, block I/O straight into guest memory, block discard / write-zeroes.
            SyscallRule("preadv"), SyscallRule("pwritev"), SyscallRule("epoll_create1"), SyscallRule("epoll_ctl"), SyscallRule("epoll_wait"),
            SyscallRule("epoll_pwait"), SyscallRule("eventfd2"), SyscallRule("fallocate"), SyscallRule("rmdir"),
            SyscallRule("wait4", when: [[.oneOf(argument: 0, values: ownPIDs)]]),
            // Threads only (pthread_create); no fork. clone3 passes its flags in memory seccomp
            // cannot read, so it fails with ENOSYS and glibc falls back to clone.
            SyscallRule("clone", when: [[.anyBitSet(argument: 0, mask: cloneThread)]]),
            SyscallRule("clone3", action: .errno(ENOSYS)),
            SyscallRule("set_robust_list"), SyscallRule("rseq"), SyscallRule("sigaltstack"),
            // No one may replace the SIGSYS reporter.
            SyscallRule("rt_sigaction", when: [[.notEqual(argument: 0, value: UInt32(SIGSYS))]]),
            SyscallRule("rt_sigtimedwait"),
            SyscallRule("kill", when: [[.oneOf(argument: 0, values: ownPIDs)]]),
            SyscallRule("sched_getaffinity"),
            SyscallRule("sched_setaffinity", when: [[.equals(argument: 0, value: 0)]]),
            SyscallRule("prctl", when: [[.equals(argument: 0, value: prSetName)]]),
            // Threads add their role's narrower filter on top of this one (filters only ever narrow).
            SyscallRule("seccomp", when: [[.equals(argument: 0, value: seccompSetModeFilter)]]),
        ]
        return SeccompPolicy(role: .control, rules: rules, defaultAction: deny)
    }

    /// A vCPU thread: KVM_RUN and the exit handlers (port/MMIO devices, console output to the
    /// terminal, log and attached API clients). The log's rotation runs on its own thread.
    public static func vcpu(pid: Int32, deny: SeccompAction) throws(SeccompPolicyError) -> SeccompPolicy {
        let rules: [SyscallRule] = [
            SyscallRule("ioctl", when: [[.oneOf(argument: 1, values: try IoctlRequests.values(vcpuIoctls))]]),
            SyscallRule("write"), SyscallRule("sendto"),
        ] + memory + runtime(pid: pid) + [
            SyscallRule("close"),
            // A guest's virtio reset, on the trapping vCPU, drains the queue notifiers (eventfd reads)
            // and closes the device's vsock connections.
            SyscallRule("read"), SyscallRule("shutdown"),
        ]
        return SeccompPolicy(role: .vcpu, rules: rules, defaultAction: deny)
    }

    /// A virtio device worker, the thread that parses guest-controlled rings: I/O on descriptors
    /// opened before the guest ran (disk images, TAP, passt's socket, eventfds, epoll), accepting on
    /// the vsock / console listeners it owns, balloon page release. Nothing that opens a path, creates
    /// a socket or a thread, or touches KVM: a vsock connect to the host goes to the connector thread.
    public static func device(pid: Int32, deny: SeccompAction) throws(SeccompPolicyError) -> SeccompPolicy {
        let rules: [SyscallRule] = [
            SyscallRule("read"), SyscallRule("write"), SyscallRule("readv"), SyscallRule("writev"),
            SyscallRule("pread64"), SyscallRule("pwrite64"), SyscallRule("preadv"), SyscallRule("pwritev"),
            SyscallRule("fsync"), SyscallRule("fdatasync"), SyscallRule("fallocate"), SyscallRule("ftruncate"),
            SyscallRule("lseek"), SyscallRule("fstat"), SyscallRule("close"), SyscallRule("fcntl"),
            SyscallRule("epoll_wait"), SyscallRule("epoll_pwait"), SyscallRule("epoll_ctl"), SyscallRule("poll"),
            SyscallRule("recvfrom"), SyscallRule("recvmsg"), SyscallRule("sendto"), SyscallRule("sendmsg"),
            SyscallRule("shutdown"), SyscallRule("accept"), SyscallRule("accept4"), SyscallRule("getrandom"),
            SyscallRule("set_robust_list"), SyscallRule("rseq"), SyscallRule("sigaltstack"),
        ] + memory + runtime(pid: pid)
        return SeccompPolicy(role: .device, rules: rules, defaultAction: deny)
    }

    /// The console input thread: read the input, hand bytes to the UART, raise its interrupt (an
    /// irqfd pulse, a write to an eventfd, where KVM has irqfd; else KVM_IRQ_LINE).
    public static func deviceIO(pid: Int32, deny: SeccompAction) throws(SeccompPolicyError) -> SeccompPolicy {
        let rules: [SyscallRule] = [
            SyscallRule("read"), SyscallRule("write"),
            SyscallRule("ioctl", when: [[.oneOf(argument: 1, values: try IoctlRequests.values(deviceIoctls))]]),
        ] + memory + runtime(pid: pid)
        return SeccompPolicy(role: .deviceIO, rules: rules, defaultAction: deny)
    }
}
