internal import CVireoSystem
import VMM
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
        let pid = IsolationPlan.forkAhead()
        if pid == 0 {
            close(ends[0])
            runForkedAhead(ends[1], memoryBytes: memoryBytes, vmID: vmID)
        }
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

    /// The member once its VMM child is ready: says ready, takes the VM and passes it on to the
    /// child at once, with the VM directory's path the daemon sent; it reads no spec and makes no
    /// plan. The child creates the VM's cgroups and jail directory itself and reports them
    /// (IsolationPlan.joinForkedAhead); the member supervises it and removes them at its end.
    static func superviseHandedVM(_ vmm: (pid: pid_t, socket: Int32)) throws -> Never {
        // Opened ahead, so that a seccomp kill right after the hand-off is still in what it reads.
        let kernelLog = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        let vmID = "vm-\(getpid())"
        // The child's jail directory made ahead (IsolationAhead), removed here if no VM comes to use it.
        let aheadRoot = IsolationPlan.defaultJailRoot(vmID: vmID)
        let handed: HandedVM
        let received: Double
        do {
            try say("ready \(getpid()) ahead\n")
            let (text, fds) = try receive(on: socketFD, what: "the daemon")
            received = PoolMilestones.now()
            close(socketFD)  // the child holds its copy, for `up`
            if text.isEmpty && fds.isEmpty {  // drained: no VM came
                rmdir(aheadRoot)
                exit(0)
            }
            handed = try HandedVM(text: text, fds: fds)
            guard !handed.directoryPath.isEmpty else { throw UsageError("pool: the daemon sent no VM directory") }
        } catch {
            rmdir(aheadRoot)
            throw error
        }
        if kernelLog >= 0 { lseek(kernelLog, 0, SEEK_END) }
        dup2(handed.descriptors[1], 1)
        dup2(handed.descriptors[1], 2)
        // The VM directory's path too: the child's mount namespace was made ahead, so the directory
        // descriptor it gets is of a mount outside it; it changes into its own view by path.
        let timeline = handed.timeline + [("member got the VM", received)]
        let message = Array("vm 1 \(vmID)\n\(handed.directoryPath)\n\(HandedVM.timelineLines(timeline))".utf8)
        let sent = handed.descriptors.withUnsafeBufferPointer { list in
            message.withUnsafeBytes { csys_send_fds(vmm.socket, $0.baseAddress, $0.count, list.baseAddress, Int32(list.count)) }
        }
        guard sent == message.count else {
            rmdir(aheadRoot)
            throw UsageError("pool: the VMM process did not take the VM: \(String(cString: strerror(Int32(-sent))))")
        }
        for fd in handed.descriptors { close(fd) }
        IsolationPlan.superviseForkedVMM(vmm.pid, vmID: vmID, reports: vmm.socket, kernelLog: kernelLog, aheadJailRoot: aheadRoot)
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
    private static func runForkedAhead(_ member: Int32, memoryBytes: UInt64?, vmID: String) -> Never {
        _ = csys_set_parent_death_signal(SIGKILL)
        _ = chdir("/")  // the slot is the member's; the VM's directory comes with the VM
        // First, while single-threaded: namespaces (unshare(CLONE_NEWNS) needs one thread) and the
        // seccomp programs for the host's default mode (a spec that names another compiles its own).
        IsolationAhead.prepare(deny: ((try? RunFlags.seccompMode(nil)) ?? .on).denyAction, vmID: vmID)
        KVMPrewarm.prepareVM(memoryBytes: memoryBytes)
        let ready = Array("ready".utf8)
        guard ready.withUnsafeBytes({ send(member, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == ready.count else { _exit(0) }
        VMMMain.runToExit {
            let (text, fds) = try receive(on: member, what: "the pool member")
            let passed = PoolMilestones.now()
            let vmID = text.prefix { $0 != "\n" }.dropFirst(5)
            guard text.hasPrefix("vm 1 vm-"), vmID.count > 3, vmID.dropFirst(3).allSatisfy(\.isNumber) else {
                for fd in fds { close(fd) }
                if text.isEmpty && fds.isEmpty { _exit(0) }  // the member ended without a VM
                throw UsageError("pool: unexpected hand-off from the member")
            }
            let handed = try HandedVM(text: text, fds: fds)
            guard !handed.directoryPath.isEmpty else { throw UsageError("pool: the member sent no VM directory") }
            // The daemon's steps and the member's receipt, then this process's.
            let timeline = handed.timeline.isEmpty ? [("member got the VM", passed)] : handed.timeline
            PoolMilestones.start(timeline[0].0, at: timeline[0].1)
            for (name, moment) in timeline.dropFirst() { PoolMilestones.record(name, at: moment) }
            PoolMilestones.record("member passed it on", at: passed)
            let spec = try handed.enter()
            try enterOwnView(of: handed.directoryPath)
            PoolMilestones.mark("spec read")
            try SpecRunner(spec: spec.spec, verbose: false, snapshotFiles: spec.files, forkedAheadID: String(vmID),
                           supervisorSocket: member, started: announceUp).run()
        }
    }
}
