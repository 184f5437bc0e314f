internal import CVireoSystem
#if canImport(Glibc)
import Glibc
#endif

/// The `vireo run` process when the VMM runs as its child (jail, cgroups, `--seccomp=kill`):
/// forwards SIGINT/SIGTERM/SIGHUP (and the --snapshot-on signals), waits, removes the VM's cgroups and jail directory however the
/// VMM ended, restores the terminal after a VMM killed in raw mode, reports a seccomp kill with
/// the syscall's name, and exits with the VMM's status. It does not run guest code, so it keeps
/// no seccomp filter of its own.
struct Supervisor {
    let cgroups: VMCgroups?
    let jail: JailLayout?
    let readKernelLog: Bool
    /// An empty directory to remove at the end too (a warm-pool VMM's jail directory made ahead and not used).
    var leftoverRoot: String?
    private var kernelLog: Int32 = -1
    private var savedTerminal = termios()
    private var terminalSaved = false

    init(cgroups: VMCgroups?, jail: JailLayout?, readKernelLog: Bool) {
        self.cgroups = cgroups
        self.jail = jail
        self.readKernelLog = readKernelLog
    }

    /// Forks (into a new PID namespace if asked); returns the child's pid to the parent, 0 to the
    /// child, -1 on failure. Stop signals are blocked across the fork: the VMM takes them with
    /// sigwait later, the supervisor forwards them.
    mutating func fork(newPIDNamespace: Bool) -> pid_t {
        openKernelLog()
        terminalSaved = isatty(0) == 1 && tcgetattr(0, &savedTerminal) == 0
        let pid = Supervisor.forkBlockingStopSignals(newPIDNamespace: newPIDNamespace)
        if pid == 0 && kernelLog >= 0 { close(kernelLog) }
        return pid
    }

    /// The fork of a warm-pool member (WarmPoolMember), before any VM is known: the child, PID 1 of
    /// a new PID namespace, becomes the VMM; the caller supervises it once the VM comes
    /// (IsolationPlan.superviseForkedVMM). Returns as `fork` does.
    static func forkAhead() -> pid_t {
        forkBlockingStopSignals(newPIDNamespace: true)
    }

    private static func forkBlockingStopSignals(newPIDNamespace: Bool) -> pid_t {
        var set = sigset_t()
        sigemptyset(&set)
        // The stop signals and the snapshot signals: blocked until the VMM's signal thread takes them.
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGUSR2, SIGQUIT] { sigaddset(&set, signal) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        if newPIDNamespace {
            let result = csys_unshare(CSYS_CLONE_NEWPID)
            if result != 0 { errno = -result; return -1 }
        }
        return csys_fork()
    }

    /// `--seccomp=kill`: the kernel log, read from its end, names a seccomp kill afterwards.
    mutating func openKernelLog() {
        guard readKernelLog, kernelLog < 0 else { return }
        kernelLog = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        if kernelLog >= 0 { lseek(kernelLog, 0, SEEK_END) }
    }

    /// A /dev/kmsg descriptor opened earlier (from its end), used as `openKernelLog`'s.
    mutating func adoptKernelLog(_ fd: Int32) {
        if kernelLog >= 0 { close(kernelLog) }
        kernelLog = fd
    }

    /// Waits for the VMM, cleans up and exits with its status.
    func superviseAndExit(child: pid_t) -> Never {
        _ = csys_forward_stop_signals(child)
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        cgroups?.remove()
        jail?.removeRoot()
        if let leftoverRoot { rmdir(leftoverRoot) }
        let signalled = status & 0x7F
        if signalled == 0 {
            exit((status >> 8) & 0xFF)
        }
        if terminalSaved {
            var saved = savedTerminal
            tcsetattr(0, TCSANOW, &saved)
        }
        if signalled == SIGSYS {
            let name = readKernelLog ? deniedSyscall(pid: child) : nil
            report("the VMM was killed by seccomp: " + (name ?? "a denied syscall (SIGSYS; the kernel's audit log names it)"))
        } else {
            report("the VMM was killed by signal \(signalled)")
        }
        exit(128 + signalled)
    }

    /// Finds the kernel's seccomp audit record for `pid` (type=1326 ... pid=N ... syscall=M).
    private func deniedSyscall(pid: pid_t) -> String? {
        guard kernelLog >= 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 8192)
        for _ in 0..<50 {
            while true {
                let count = buffer.withUnsafeMutableBytes { read(kernelLog, $0.baseAddress, $0.count) }
                if count < 0 && errno == EPIPE { continue }  // records were overwritten; go on
                guard count > 0 else { break }
                let record = String(decoding: buffer[0..<count], as: UTF8.self)
                if let number = Supervisor.seccompSyscall(inAuditRecord: record, pid: pid) {
                    return "syscall \(Syscalls.name(number) ?? "unknown") (nr \(number))"
                }
            }
            usleep(10_000)  // kauditd prints asynchronously
        }
        return nil
    }

    /// The syscall number in a kernel log line for a seccomp record of process `pid`.
    static func seccompSyscall(inAuditRecord record: String, pid: pid_t) -> Int? {
        guard record.contains("type=1326"), record.contains(" pid=\(pid) ") else { return nil }
        for field in record.split(separator: " ") where field.hasPrefix("syscall=") {
            return Int(field.dropFirst("syscall=".count).prefix { $0.isNumber })
        }
        return nil
    }

    private func report(_ message: String) { reportOnStandardError(message) }
}
