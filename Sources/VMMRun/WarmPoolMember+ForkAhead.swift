internal import CVireoSystem
import VMM
import VMSpec
#if canImport(Glibc)
import Glibc
#endif

/// The warm-pool member's fork ahead (root members; docs/snapshots.md, "The warm pool"): the VMM
/// process proper is forked before any VM is known, makes the KVM VM (and registers guest RAM's
/// slots) and waits; the member becomes the jail's supervisor once the VM comes.
extension WarmPoolMember {
    /// Forks the VMM child and waits until it has made its KVM VM; nil (nothing forked, or the
    /// child failed) leaves the member to run the VM itself.
    static func forkVMMAhead(memoryBytes: UInt64?) -> (pid: pid_t, socket: Int32)? {
        var ends: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0 else { return nil }
        let vmID = "vm-\(getpid())"  // the member's: the cgroup and jail name its VM will get
        // The child waits at a better nice value (root may lower it), so that the daemon's hand-off
        // wakes it onto a CPU at once instead of after what the daemon and others do next; it is
        // back at the daemon's value before it starts anything of the VM (SpecRunner), as is this
        // process right after the fork (nice is per thread and inherited).
        let niceness = Niceness.current
        Niceness.set(niceness - waitingNicenessBoost)
        let pid = IsolationPlan.forkAhead()
        if pid == 0 {
            close(ends[0])
            runForkedAhead(ends[1], memoryBytes: memoryBytes, vmID: vmID, niceness: niceness)
        }
        Niceness.set(niceness)
        close(ends[1])
        guard pid > 0 else {
            close(ends[0])
            leaveUnlessChildrenShareOurPIDNamespace()
            return nil
        }
        var reply = [UInt8](repeating: 0, count: 16)
        let count = reply.withUnsafeMutableBytes { recv(ends[0], $0.baseAddress, $0.count, 0) }
        guard count > 0, reply.starts(with: Array("ready".utf8)) else {
            close(ends[0])
            kill(pid, SIGKILL)
            waitpid(pid, nil, 0)
            leaveUnlessChildrenShareOurPIDNamespace()
            return nil
        }
        return (pid, ends[0])
    }

    /// After a failed fork ahead, the member may run the VM itself only if its children would
    /// still start in its own PID namespace (the unshare did not happen): a jailed VM's supervisor
    /// cannot unshare a PID namespace twice. Otherwise it ends, and the daemon starts another.
    private static func leaveUnlessChildrenShareOurPIDNamespace() {
        func link(_ path: String) -> String {
            var buffer = [CChar](repeating: 0, count: 64)
            let count = readlink(path, &buffer, buffer.count - 1)
            return count > 0 ? String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
        }
        let own = link("/proc/self/ns/pid")
        guard !own.isEmpty, own == link("/proc/self/ns/pid_for_children") else {
            printError("vireo: pool: the VMM process could not be forked ahead\n")
            exit(1)
        }
    }

    /// The member once its VMM child is ready: says ready and leaves the daemon's socket to the
    /// child, which takes the VM on it directly (one process wake-up less on the request's way).
    /// It reads no spec and makes no plan: the child creates the VM's cgroups and jail directory
    /// itself and reports them with the VM's `vmm.log` (IsolationPlan.joinForkedAhead); the member
    /// supervises it and removes them at its end (or, without a VM, the jail directory made ahead).
    static func superviseHandedVM(_ vmm: (pid: pid_t, socket: Int32)) throws -> Never {
        let vmID = "vm-\(getpid())"
        // Opened ahead, so that a seccomp kill right after the hand-off is still in what it reads.
        let kernelLog = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        let aheadRoot = IsolationPlan.defaultJailRoot(vmID: vmID)
        do {
            try say("ready \(getpid()) ahead\n")
        } catch {
            rmdir(aheadRoot)  // the child dies with this process (PR_SET_PDEATHSIG)
            throw error
        }
        close(socketFD)  // the child's from here on: the VM, then `up`
        // Its work on the child's report (a cgroup sweep) waits at the lowest priority while the
        // child restores the VM; back at the daemon's value after it (root may lower it again).
        let niceness = Niceness.current
        Niceness.set(19)
        IsolationPlan.superviseForkedVMM(vmm.pid, vmID: vmID, reports: vmm.socket, kernelLog: kernelLog,
                                         aheadJailRoot: aheadRoot, niceness: niceness)
    }

    /// Changes from the VM directory as handed over (a descriptor of the host's mount namespace,
    /// which the child left ahead) to the same directory in the child's own mount namespace, as a
    /// fresh VMM's directory is after its unshare: checked to be the same directory (device and
    /// inode), else the VM is refused.
    private static func enterOwnView(of path: String) throws {
        var handed = stat(), own = stat()
        guard path.hasPrefix("/"), stat(".", &handed) == 0, chdir(path) == 0, stat(".", &own) == 0,
              own.st_dev == handed.st_dev, own.st_ino == handed.st_ino else {
            throw UsageError("pool: the VM directory \(path) is not the one handed over")
        }
    }

    /// The VMM child: makes the KVM VM, says ready to the member, waits for the VM and runs it.
    /// Runs what the request will run first, on a spec shaped like the daemon's, so that the
    /// request finds the Swift runtime's type metadata and protocol conformances (the spec's
    /// decoding and validation are generic Codable code) and the C library's user database set-up
    /// already resolved: the first run of each costs a few hundred microseconds, later ones little.
    private static func warmSpecPath() {
        var sample = VMSpec(machine: VMSpec.MachineShape(cpus: 1, memoryBytes: 256 << 20), boot: .restore(directory: "/"))
        sample.console = VMSpec.Console(logPath: "vmm/console.log", logMaxBytes: 1 << 20, toStdout: false, fromStdin: false)
        sample.control = VMSpec.Control(apiSocket: "vmm/api.sock")
        sample.resources = VMSpec.Resources(cpuWeight: 100, cpuMax: VMSpec.Resources.CPUMax(quotaMicros: 50_000),
                                            memoryMaxBytes: 512 << 20)
        sample.isolation = VMSpec.Isolation(jail: true, uid: UserIdentity.perVMRange.lowerBound,
                                            gid: UserIdentity.perVMRange.lowerBound, imageRoots: ["/"])
        if let text = try? sample.jsonText(), let parsed = try? VMSpec.parse(Array(text.utf8)) {
            try? SpecValidator.validate(parsed)
        }
        _ = getpwuid(UserIdentity.perVMRange.lowerBound)
    }

    /// How much lower the nice value of a VMM forked ahead is while it waits for its VM.
    static let waitingNicenessBoost: Int32 = 10

    private static func runForkedAhead(_ member: Int32, memoryBytes: UInt64?, vmID: String, niceness: Int32) -> Never {
        _ = csys_set_parent_death_signal(SIGKILL)
        _ = chdir("/")  // the slot is the member's; the VM's directory comes with the VM
        // First, while single-threaded: namespaces (unshare(CLONE_NEWNS) needs one thread) and the
        // seccomp programs for the host's default mode (a spec that names another compiles its own).
        IsolationAhead.prepare(deny: ((try? RunFlags.seccompMode(nil)) ?? .on).denyAction, vmID: vmID)
        KVMPrewarm.prepareVM(memoryBytes: memoryBytes)
        warmSpecPath()
        let ready = Array("ready".utf8)
        guard ready.withUnsafeBytes({ send(member, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == ready.count else { _exit(0) }
        VMMMain.runToExit {
            let (bytes, fds) = try receive(on: socketFD, what: "the daemon")
            let received = PoolMilestones.now()
            if bytes.isEmpty && fds.isEmpty { _exit(0) }  // drained: no VM came (the member cleans up)
            let handed = try HandedVM(bytes: bytes, fds: fds)
            guard !handed.directoryPath.isEmpty else { throw UsageError("pool: the daemon sent no VM directory") }
            // The daemon's steps, then this process's.
            let timeline = handed.timeline + [("VMM got the VM", received)]
            PoolMilestones.start(timeline[0].0, at: timeline[0].1)
            for (name, moment) in timeline.dropFirst() { PoolMilestones.record(name, at: moment) }
            // The VM's vmm.log and directory for the member too (its output; its working directory,
            // by which a restarted daemon recognises the VM's VMM), with the report.
            let forMember = [handed.descriptors[1], handed.descriptors[0]].map { fcntl($0, F_DUPFD_CLOEXEC, 0) }
            let spec = try handed.enter()
            // The directory descriptor is of a mount outside this process's mount namespace (made
            // ahead): it changes into its own view of the directory by path.
            try enterOwnView(of: handed.directoryPath)
            PoolMilestones.mark("spec read")
            try SpecRunner(spec: spec.spec, verbose: false, snapshotFiles: spec.files, forkedAheadID: vmID,
                           supervisorSocket: member, supervisorDescriptors: forMember.filter { $0 >= 0 }, niceness: niceness,
                           started: announceUp).run()
        }
    }
}
