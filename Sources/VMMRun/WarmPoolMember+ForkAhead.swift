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
        let pid = IsolationPlan.forkAhead()
        if pid == 0 {
            close(ends[0])
            runForkedAhead(ends[1], memoryBytes: memoryBytes)
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

    /// The member once its VMM child is ready: says ready, takes the VM, and becomes the jail's
    /// supervisor (IsolationPlan.superviseForkedVMM), passing the VM's descriptors to the child.
    static func superviseHandedVM(_ vmm: (pid: pid_t, socket: Int32)) throws -> Never {
        try say("ready \(getpid()) ahead\n")
        let (text, fds) = try receive(on: socketFD, what: "the daemon")
        let received = PoolMilestones.now()
        close(socketFD)  // the child holds its copy, for `up`
        let handed = try HandedVM(text: text, fds: fds)
        guard fchdir(fds[0]) == 0 else { throw UsageError("pool: cannot enter the VM directory: \(String(cString: strerror(errno)))") }
        dup2(fds[1], 1)
        dup2(fds[1], 2)
        let spec = try readSpec()
        var config = VMConfig(spec: spec)
        let plan = try SpecRunner.plan(spec, config: &config)
        try plan.superviseForkedVMM(vmm.pid) { () throws(VMMError) in
            // The VM directory's path too: the child's mount namespace was made ahead, so the directory
            // descriptor it gets is of a mount outside it; it changes into its own view by path.
            let message = Array("vm 1 \(plan.vmID)\n\(format6(received))\n\(currentDirectory() ?? "")\n".utf8)
            let sent = handed.descriptors.withUnsafeBufferPointer { list in
                message.withUnsafeBytes { csys_send_fds(vmm.socket, $0.baseAddress, $0.count, list.baseAddress, Int32(list.count)) }
            }
            guard sent == message.count else {
                throw .invalidConfiguration("pool: the VMM process did not take the VM: \(String(cString: strerror(Int32(-sent))))")
            }
            for fd in handed.descriptors { close(fd) }
            close(vmm.socket)
        }
    }

    /// The working directory's absolute path (the member's, in the host's mount namespace).
    private static func currentDirectory() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return nil }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
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
    private static func runForkedAhead(_ member: Int32, memoryBytes: UInt64?) -> Never {
        _ = csys_set_parent_death_signal(SIGKILL)
        _ = chdir("/")  // the slot is the member's; the VM's directory comes with the VM
        // First, while single-threaded: namespaces (unshare(CLONE_NEWNS) needs one thread) and the
        // seccomp programs for the host's default mode (a spec that names another compiles its own).
        IsolationAhead.prepare(deny: ((try? RunFlags.seccompMode(nil)) ?? .on).denyAction)
        KVMPrewarm.prepareVM(memoryBytes: memoryBytes)
        let ready = Array("ready".utf8)
        guard ready.withUnsafeBytes({ send(member, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == ready.count else { _exit(0) }
        VMMMain.runToExit {
            let (text, fds) = try receive(on: member, what: "the pool member")
            let passed = PoolMilestones.now()
            close(member)
            let lines = text.dropFirst(5).split(separator: "\n")
            guard text.hasPrefix("vm 1 vm-"), let vmID = lines.first else {
                for fd in fds { close(fd) }
                if text.isEmpty && fds.isEmpty { _exit(0) }  // the member ended without a VM
                throw UsageError("pool: unexpected hand-off from the member")
            }
            PoolMilestones.start("member got the VM", at: lines.count > 1 ? Double(lines[1]) ?? passed : passed)
            PoolMilestones.mark("member checked it, made cgroups and jail directory, passed it on")
            let handed = try HandedVM(text: "vm 1", fds: fds)
            let spec = try handed.enter()
            if lines.count > 2 { try enterOwnView(of: String(lines[2])) }
            PoolMilestones.mark("spec read")
            try SpecRunner(spec: spec.spec, verbose: false, snapshotFiles: spec.files, forkedAheadID: String(vmID),
                           started: announceUp).run()
        }
    }
}
