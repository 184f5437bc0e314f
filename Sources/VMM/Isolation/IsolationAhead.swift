internal import CVireoSystem
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The parts of a jailed VMM's isolation that a warm-pool VMM forked ahead (WarmPoolMember) sets up
/// before any VM is known, because none of them depends on the VM:
///
/// - its mount (mounts made private), IPC and UTS namespaces, which `launch`'s child enters first;
/// - the jail's tmpfs at the default jail directory for the VM id it will get, with the host's
///   device nodes (JailLayout.prepareAhead; mirrors, the devices' owner and pivot_root come with the VM);
/// - its empty network namespace: made now, then left for the host's again (TAP and passt are set
///   up there, as a fresh VMM sets them up before `enter`); `enter` joins it instead of making one;
/// - the seccomp programs whose every input is known: the pid (PID 1 of its namespace) and the
///   host's deny action, and for the control filter a VM without passt.
///
/// `IsolationPlan` takes what fits and makes the rest as it does for a fresh VMM, so a pooled VMM
/// ends exactly as confined as a fresh one: the same namespaces (new, empty), the same programs
/// compiled from the same policies and inputs.
public enum IsolationAhead {
    struct Compiled {
        let policy: SeccompPolicy
        let program: [BPFInstruction]
    }

    private struct Prepared {
        var namespaces = false
        /// The new network namespace (a descriptor of /proc/self/ns/net), -1 when none.
        var network: Int32 = -1
        var pid: Int32 = 0
        var deny: SeccompAction?
        /// vCPU, device and device I/O programs.
        var programs: [SeccompRole: Compiled] = [:]
        /// The control program without helpers, for hostConnects false and true.
        var control: [Bool: Compiled] = [:]
        /// The jail's tmpfs and device nodes at the default jail directory (JailLayout.prepareAhead).
        var jail: JailLayout?
    }

    private static let prepared = Mutex(Prepared())

    /// Call in the VMM process forked ahead, root and single-threaded (unshare(CLONE_NEWNS) needs
    /// that). `deny`: what the host's default seccomp mode denies with (nil: seccomp off). Nothing
    /// that fails here is fatal: the plan then does that step on the request, as for a fresh VMM.
    /// `vmID`: the cgroup and jail name the VM will get (its supervisor's, `vm-<member pid>`): the
    /// jail at the default directory for it is prepared too.
    public static func prepare(deny: SeccompAction?, vmID: String) {
        var value = Prepared()
        let flags = CSYS_CLONE_NEWNS | CSYS_CLONE_NEWIPC | CSYS_CLONE_NEWUTS
        if csys_unshare(flags) == 0 {
            // Without private mounts the jail's mounts would reach the host: then end (the member
            // reports the failed fork ahead) rather than go on in a namespace that half exists.
            guard csys_make_mounts_private() == 0 else { _exit(1) }
            value.namespaces = true
            value.jail = JailLayout.prepareAhead(root: IsolationPlan.defaultJailRoot(vmID: vmID))
        }
        value.network = makeNetworkNamespace()
        value.pid = getpid()
        if let deny {
            value.deny = deny
            for role in [SeccompRole.vcpu, .device, .deviceIO] {
                value.programs[role] = compile(role, pid: value.pid, hostConnects: false, deny: deny)
            }
            for connects in [false, true] {
                value.control[connects] = compile(.control, pid: value.pid, hostConnects: connects, deny: deny)
            }
        }
        let result = value
        prepared.withLock { $0 = result }
    }

    /// A new network namespace, its descriptor kept, and back into the host's; -1 when any step
    /// fails (back in the host's namespace, or in none new).
    private static func makeNetworkNamespace() -> Int32 {
        let host = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)
        guard host >= 0 else { return -1 }
        defer { close(host) }
        guard csys_unshare(CSYS_CLONE_NEWNET) == 0 else { return -1 }
        let created = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)
        // Back to the host's either way: TAP devices and passt are set up there.
        guard csys_setns(host, CSYS_CLONE_NEWNET) == 0 else { _exit(1) }
        return created
    }

    private static func compile(_ role: SeccompRole, pid: Int32, hostConnects: Bool, deny: SeccompAction) -> Compiled? {
        guard let policy = try? SeccompProfiles.policy(role, pid: pid, helpers: [], hostConnects: hostConnects, deny: deny),
              let program = try? policy.compile() else { return nil }
        return Compiled(policy: policy, program: program)
    }

    /// The jail prepared ahead, once (the caller uses or discards it), or nil.
    static func takeJail() -> JailLayout? {
        prepared.withLock { value in
            defer { value.jail = nil }
            return value.jail
        }
    }

    /// True once, if the mount, IPC and UTS namespaces were entered ahead.
    static func takeNamespaces() -> Bool {
        prepared.withLock { value in
            defer { value.namespaces = false }
            return value.namespaces
        }
    }

    /// The network namespace made ahead, once (the caller joins and closes it), or -1.
    static func takeNetworkNamespace() -> Int32 {
        prepared.withLock { value in
            defer { value.network = -1 }
            return value.network
        }
    }

    /// The program compiled ahead for exactly these inputs, or nil (the caller compiles it).
    static func program(_ role: SeccompRole, pid: Int32, deny: SeccompAction, helpers: [Int32], hostConnects: Bool) -> Compiled? {
        prepared.withLock { value in
            guard value.pid == pid, value.deny == deny else { return nil }
            if role == .control { return helpers.isEmpty ? value.control[hostConnects] : nil }
            return value.programs[role]
        }
    }
}
