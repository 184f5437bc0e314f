internal import CVireoSystem
import Devices
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Isolation for one VMM, validated against the host, in three steps `vireo run` calls in order:
///
/// 1. `prepare` (before anything starts): checks every setting against the host (CPUs online,
///    user exists, a cgroup hierarchy that can do the job, jail paths) and fails with one
///    user-facing VMMError.
/// 2. `launch` (before the Machine is built): when a jail, cgroup limits or `--seccomp=kill` need
///    it, forks. The parent becomes a small supervisor that creates and finally removes the cgroups
///    and jail directory, forwards stop signals and reports how the VMM ended; it never returns.
///    The child joins the cgroups, enters new mount/IPC/UTS namespaces (and is PID 1 of a new
///    PID namespace) and returns to build the VM.
/// 3. `enter` (after the Machine is built, before any thread starts): a new network namespace,
///    pivot_root into the jail, switch user, drop capabilities, set no_new_privs, install the base
///    (control) seccomp filter. The network namespace comes this late on purpose: the Machine has
///    opened its TAP fds and started passt (holding its socket) in the host's namespace, and those
///    descriptors keep working from the empty one, which leaves the VMM no route of its own.
///    Threads then call `ThreadRole.enter(under:)` with the plan for their own filter and affinity.
/// @unchecked Sendable: Its state is written by `prepare`, `launch` and `enter` on the main thread before any other VMM thread exists; afterwards threads only read it (`enterThread`, `status`).
public final class IsolationPlan: @unchecked Sendable {
    public let settings: IsolationSettings
    /// `vm-<pid of vireo run>`: the cgroup and jail names.
    public let vmID: String
    public let user: UserIdentity?
    public private(set) var jail: JailLayout?
    public let cgroups: VMCgroups?
    /// Lines `vireo run` prints on stderr whatever the verbosity (e.g. that seccomp is off).
    public private(set) var warnings: [String] = []

    private var programs: [SeccompRole: [BPFInstruction]] = [:]
    private var policies: [SeccompRole: SeccompPolicy] = [:]
    private var roleNames: [SeccompRole: UnsafeMutablePointer<CChar>] = [:]
    private let vcpuThreads = Mutex<[(vcpu: UInt32, tid: Int32)]>([])
    private var supervised = false
    /// A vsock device connects to host sockets at run time (SeccompProfiles.control's `connect`).
    private var hostConnects = true
    /// The effective capabilities once `enter` dropped privileges (read before the filter is on).
    private var capabilitiesAfterDrop: Int64 = -1
    private var identityAfterDrop: (uid: UInt32, gid: UInt32, noNewPrivileges: Bool) = (0, 0, false)


    /// Called with the name of each step of `enter` as it ends (a warm-pool VMM's timeline,
    /// PoolMilestones); set on the main thread before `enter`, nil otherwise.
    nonisolated(unsafe) public static var step: ((String) -> Void)?

    private init(settings: IsolationSettings, vmID: String, user: UserIdentity?, jail: JailLayout?, cgroups: VMCgroups?) {
        self.settings = settings
        self.vmID = vmID
        self.user = user
        self.jail = jail
        self.cgroups = cgroups
    }

    // MARK: 1. prepare

    /// Validates `settings` for `config` on this host; rewrites `config`'s paths to absolute ones
    /// when jailed (they must mean the same inside the jail). `vmID` (the cgroup and jail names) is
    /// `vm-<pid>` unless given: a VMM forked ahead by a warm-pool member takes its supervisor's.
    public static func prepare(_ settings: IsolationSettings, config: inout VMConfig,
                               vmID givenID: String? = nil) throws(VMMError) -> IsolationPlan {
        let vmID = givenID ?? "vm-\(getpid())"
        // Before anything opens an image: the Machine opens them beneath these roots only.
        BeneathRoots.configure(settings.imageRoots)
        // Ranges (cpu weight, cpu max, memory max against guest RAM) are SpecValidator's; these are the host's.
        if let affinity = settings.cpuAffinity {
            let online = CPUList.online()
            let allowed = CPUList.allowed()
            for cpu in affinity {
                guard online.contains(cpu) else {
                    throw .invalidConfiguration("--cpu-affinity: CPU \(cpu) is not online on this host (online: \(CPUList.format(online)))")
                }
                guard allowed.contains(cpu) else {
                    throw .invalidConfiguration("--cpu-affinity: CPU \(cpu) is outside this process's cpuset (allowed: \(CPUList.format(allowed)))")
                }
            }
        }
        var user: UserIdentity?
        if let uid = settings.uid {
            guard settings.user == nil else { throw .invalidConfiguration("isolation: give either a user name or a uid, not both") }
            user = try UserIdentity.numeric(uid: uid, gid: settings.gid)
        } else if let name = settings.user {
            user = try UserIdentity.resolve(user: name, group: settings.group)
        } else if settings.group != nil || settings.gid != nil {
            throw .invalidConfiguration("--gid needs --uid")
        } else if settings.jail {
            guard let vireo = UserIdentity.vireoUser else {
                throw .invalidConfiguration("--jail needs --uid (this host has no 'vireo' user to default to)")
            }
            user = vireo
        }
        if let user, user.uid != 0 {
            for (path, option) in [(config.consoleLogPath, "--console-log"), (config.apiSocketPath, "--api-socket")] {
                guard let path else { continue }
                let directory = parentDirectory(of: absolutePath(path))
                guard user.canWrite(directory: directory) else {
                    throw .invalidConfiguration("\(option) directory \(directory) is not writable by \(user)")
                }
            }
        }
        var jail: JailLayout?
        if settings.jail {
            if !config.kernelPath.isEmpty { config.kernelPath = absolutePath(config.kernelPath) }  // empty: --restore
            config.initrdPath = config.initrdPath.map(absolutePath)
            config.consoleLogPath = config.consoleLogPath.map(absolutePath)
            config.apiSocketPath = config.apiSocketPath.map(absolutePath)
            if var vsock = config.vsock {
                vsock.socketPath = absolutePath(vsock.socketPath)
                config.vsock = vsock
            }
            let root = absolutePath(settings.jailDirectory ?? defaultJailRoot(vmID: vmID))
            jail = try JailLayout.plan(root: root, config: config)
        }
        var cgroups: VMCgroups?
        if settings.usesCgroups {
            let manager = CgroupManager()
            var placements: [CgroupPlacement] = []
            var needs: [(String, String)] = []
            if settings.cpuWeight != nil { needs.append(("cpu", "--cpu-weight")) }
            if settings.cpuMax != nil { needs.append(("cpu", "--cpu-max")) }
            if settings.memoryMax != nil { needs.append(("memory", "--memory-max")) }
            for (controller, option) in needs where !placements.contains(where: { $0.controller == controller }) {
                switch manager.place(controller, vmID: vmID, option: option) {
                case let .success(placement): placements.append(placement)
                case let .failure(error): throw error
                }
            }
            cgroups = VMCgroups(placements: placements,
                                settings: CgroupSettings(cpuWeight: settings.cpuWeight, cpuMax: settings.cpuMax,
                                                         memoryMax: settings.memoryMax))
        }
        let plan = IsolationPlan(settings: settings, vmID: vmID, user: user, jail: jail, cgroups: cgroups)
        plan.hostConnects = config.vsock != nil
        if settings.seccomp == .off {
            plan.warnings.append("WARNING: --seccomp=off: this VMM runs WITHOUT syscall filters; use it for debugging only")
        }
        return plan
    }

    /// Where a jail goes without `--jail-dir`.
    public static func defaultJailRoot(vmID: String) -> String { "\(defaultJailParent)/\(vmID)" }
    /// Where jails go unless the spec names a directory.
    public static let defaultJailParent = "/run/vireo/jail"

    // MARK: 2. launch

    /// Forks the supervisor when needed; returns in the VMM process only.
    public func launch() throws(VMMError) {
        guard jail != nil || cgroups != nil || settings.seccomp == .kill else { return }
        supervised = true
        try cgroups?.create()
        do {
            try jail?.createRoot()
        } catch {
            cgroups?.remove()
            throw error
        }
        var supervisor = Supervisor(cgroups: cgroups, jail: jail, readKernelLog: settings.seccomp == .kill)
        let pid = supervisor.fork(newPIDNamespace: jail != nil)
        guard pid >= 0 else {
            let code = errno
            cleanUp()
            throw .invalidConfiguration("cannot start the VMM process: \(String(cString: strerror(code)))")
        }
        if pid > 0 { supervisor.superviseAndExit(child: pid) }
        try joinAsVMM()
    }

    /// The VMM's side of `launch`, in the child: die with the supervisor, join the cgroups before
    /// guest RAM is touched, enter the jail's first namespaces.
    private func joinAsVMM() throws(VMMError) {
        _ = csys_set_parent_death_signal(SIGKILL)
        try cgroups?.join()
        // A VMM forked ahead (IsolationAhead) entered them before the VM was known.
        if jail != nil, !IsolationAhead.takeNamespaces() {
            // Not the network namespace yet: `enter` unshares it once TAP and passt are set up.
            let flags = CSYS_CLONE_NEWNS | CSYS_CLONE_NEWIPC | CSYS_CLONE_NEWUTS
            var result = csys_unshare(flags)
            guard result == 0 else {
                throw .invalidConfiguration("jail: cannot create namespaces: \(String(cString: strerror(-result)))")
            }
            result = csys_make_mounts_private()
            guard result == 0 else {
                throw .invalidConfiguration("jail: cannot make mounts private: \(String(cString: strerror(-result)))")
            }
        }
    }

    // MARK: 2'. launch, forked ahead (warm pool)

    /// Forks the future VMM of a warm-pool member before any VM is known: the child (0 returned)
    /// is PID 1 of a new PID namespace with the stop signals blocked, as `launch`'s child is; the
    /// parent gets its pid (or -1, errno set) and later calls `superviseForkedVMM`.
    public static func forkAhead() -> Int32 { Supervisor.forkAhead() }

    /// The supervisor's side for a VMM process forked before the VM was known (a warm-pool member,
    /// Supervisor.forkAhead: stop signals blocked, the child PID 1 of a new PID namespace). The
    /// child takes its VM from the daemon itself; the supervisor waits for the child's one
    /// SupervisionReport on `reports` (what it created: `joinForkedAhead`, with the VM's `vmm.log`,
    /// which becomes this process's output, and the VM's directory, which becomes its working
    /// directory, as the daemon expects of a VMM it re-adopts), then supervises it until it ends
    /// and removes those.
    /// It needs neither the spec nor a plan. `kernelLog`: /dev/kmsg opened before the VM came, or
    /// -1; kept (from its end) when the report asks for a seccomp kill to be named.
    /// `aheadJailRoot`: the jail directory the child made ahead, removed at the end if the report
    /// does not name it (no VM came, or the VM's spec chose another directory). A child that ends
    /// before reporting created nothing else that outlives it. `niceness`: the value to return to
    /// once the report is handled (the caller waits for it at a lower priority).
    public static func superviseForkedVMM(_ child: Int32, vmID: String, reports: Int32, kernelLog: Int32,
                                          aheadJailRoot: String, niceness: Int32? = nil) -> Never {
        var bytes = [UInt8](repeating: 0, count: SupervisionReport.maximumBytes)
        var passed: [Int32] = [-1, -1]
        var passedCount: Int32 = 0
        let count = bytes.withUnsafeMutableBytes { data in
            passed.withUnsafeMutableBufferPointer { csys_receive_fds(reports, data.baseAddress, data.count, $0.baseAddress, 2, &passedCount) }
        }
        close(reports)
        var report: SupervisionReport?
        if count > 0 {
            report = SupervisionReport.decode(Array(bytes[0..<count]), vmID: vmID)
            var info = stat()
            if passedCount >= 1, fstat(passed[0], &info) == 0, info.st_mode & S_IFMT == S_IFREG {
                dup2(passed[0], 1)
                dup2(passed[0], 2)
            }
            if passedCount == 2, fstat(passed[1], &info) == 0, info.st_mode & S_IFMT == S_IFDIR { _ = fchdir(passed[1]) }
            if report == nil { reportOnStandardError("pool: the VMM's supervision report is malformed; nothing of it is removed") }
        } else if count < 0 {
            reportOnStandardError("pool: no supervision report from the VMM: \(String(cString: strerror(Int32(-count))))")
        }
        for fd in passed.prefix(Int(passedCount)) { close(fd) }
        let cgroups = report.map { VMCgroups(adopting: $0.cgroupDirectories) }
        // What the child could not do from its PID namespace: stale siblings of its cgroups removed.
        for directory in report?.cgroupDirectories ?? [] { VMCgroups.sweepStale(in: parentDirectory(of: directory)) }
        if let niceness { Niceness.set(niceness) }
        let jail = report.map { JailLayout(root: $0.jailRoot, createdRoot: $0.createdRoot, mirrors: [], devices: []) }
        var supervisor = Supervisor(cgroups: cgroups, jail: jail, readKernelLog: report?.readKernelLog ?? false)
        if report?.jailRoot != aheadJailRoot { supervisor.leftoverRoot = aheadJailRoot }
        if report?.readKernelLog == true, kernelLog >= 0 {
            lseek(kernelLog, 0, SEEK_END)
            supervisor.adoptKernelLog(kernelLog)
        } else if kernelLog >= 0 {
            close(kernelLog)
        }
        supervisor.superviseAndExit(child: child)
    }

    /// `launch` in a VMM forked ahead, once it has its VM: creates the cgroups and jail directory
    /// (as `launch`'s supervisor does for a fresh VMM), reports them with `descriptors` (the VM's
    /// `vmm.log` and directory, as the daemon handed them over) on `supervisor` for removal
    /// (SupervisionReport; the socket and the descriptors are closed after), then joins.
    public func joinForkedAhead(reportingTo supervisorSocket: Int32, passing descriptors: [Int32]) throws(VMMError) {
        defer {
            close(supervisorSocket)
            for fd in descriptors { close(fd) }
        }
        guard jail != nil else { throw .invalidConfiguration("a warm-pool VMM forked ahead runs jailed VMs only") }
        supervised = true
        try cgroups?.create(sweeping: false)  // kill(pid, 0) means nothing in this PID namespace
        do {
            try jail?.createRoot(sweeping: false)
        } catch {
            cgroups?.remove()
            throw error
        }
        let report = SupervisionReport(jailRoot: jail!.root, createdRoot: jail!.createdRoot,
                                       cgroupDirectories: cgroups?.directories ?? [],
                                       readKernelLog: settings.seccomp == .kill)
        let bytes = report.encoded
        let sent = descriptors.withUnsafeBufferPointer { list in
            bytes.withUnsafeBytes { csys_send_fds(supervisorSocket, $0.baseAddress, $0.count, list.baseAddress, Int32(list.count)) }
        }
        guard sent == bytes.count else {
            cleanUp()
            throw .invalidConfiguration("pool: cannot report to the supervisor: \(String(cString: strerror(Int32(-sent))))")
        }
        try joinAsVMM()
    }

    private func cleanUp() {
        cgroups?.remove()
        jail?.removeRoot()
    }

    // MARK: 3. enter

    /// Jail, credentials, no_new_privs and the process-wide seccomp filter; call on the main
    /// thread before any other thread exists (capabilities and filters are per thread).
    /// `helpers`: the VMM's child processes (passt), which its filter lets it signal and reap.
    public func enter(helpers: [Int32] = []) throws(VMMError) {
        if let jail {
            try enterNetworkNamespace()
            IsolationPlan.step?("network namespace joined")
            try jail.enter(owner: user, hostname: vmID)
            IsolationPlan.step?("jail: read-only, hostname")
        }
        if jail != nil || user != nil {
            try Privileges.drop(to: user)
            // A credential change clears the parent-death signal; the VMM must still die with its supervisor.
            if supervised { _ = csys_set_parent_death_signal(SIGKILL) }
        }
        if jail != nil || user != nil || settings.seccomp != .off {
            try Privileges.setNoNewPrivileges()
        }
        IsolationPlan.step?("uid, capabilities dropped")
        if let cpus = settings.cpuAffinity {
            // Every thread created from here on inherits it; vCPU threads set it again at their start.
            let result = cpus.map(Int32.init).withUnsafeBufferPointer { csys_set_affinity($0.baseAddress, Int32($0.count)) }
            guard result == 0 else {
                throw .invalidConfiguration("--cpu-affinity \(CPUList.format(cpus)): \(String(cString: strerror(-result)))")
            }
        }
        // Read now: the control filter does not allow capget, getuid or prctl(PR_GET_*).
        capabilitiesAfterDrop = Privileges.effectiveCapabilities
        identityAfterDrop = (getuid(), getgid(), csys_no_new_privs() == 1)
        for role in SeccompRole.allCases { roleNames[role] = strdup(role.rawValue) }
        if let deny = settings.seccomp.denyAction {
            do {
                try compilePrograms(pid: getpid(), helpers: helpers, deny: deny)
            } catch {
                throw .invalidConfiguration("seccomp: \(error)")
            }
            if settings.seccomp == .on {
                let result = csys_install_sigsys_reporter()
                guard result == 0 else { throw .invalidConfiguration("seccomp: cannot install the SIGSYS reporter") }
            }
            // Swift's crash handler cannot run its backtracer under the filter: name crashes here.
            guard csys_install_crash_reporter() == 0 else { throw .invalidConfiguration("seccomp: cannot install the crash reporter") }
            csys_set_thread_role(roleNames[.control])
            // TSYNC: should the runtime have started a thread, it gets the base filter too.
            let result = install(programs[.control]!, synchronizeThreads: true)
            guard result == 0 else {
                throw .invalidConfiguration("seccomp: cannot install the control filter: \(String(cString: strerror(-result)))")
            }
        }
        TestHooks.openPathIfRequested()
        TestHooks.crashIfRequested(in: "control")
    }

    /// A new, empty network namespace: the one a VMM forked ahead made (IsolationAhead), else one
    /// made now.
    private func enterNetworkNamespace() throws(VMMError) {
        let ahead = IsolationAhead.takeNetworkNamespace()
        if ahead >= 0 {
            let result = csys_setns(ahead, CSYS_CLONE_NEWNET)
            close(ahead)
            guard result == 0 else {
                throw .invalidConfiguration("jail: cannot enter the network namespace made ahead: \(String(cString: strerror(-result)))")
            }
            return
        }
        let result = csys_unshare(CSYS_CLONE_NEWNET)
        guard result == 0 else {
            throw .invalidConfiguration("jail: cannot create a network namespace: \(String(cString: strerror(-result)))")
        }
    }

    /// The four roles' policies and programs: those compiled ahead for the same inputs
    /// (IsolationAhead), the others compiled now.
    private func compilePrograms(pid: Int32, helpers: [Int32], deny: SeccompAction) throws {
        for role in [SeccompRole.control, .vcpu, .deviceIO, .device] {
            if let ready = IsolationAhead.program(role, pid: pid, deny: deny, helpers: helpers, hostConnects: hostConnects) {
                policies[role] = ready.policy
                programs[role] = ready.program
                continue
            }
            let policy = try SeccompProfiles.policy(role, pid: pid, helpers: helpers, hostConnects: hostConnects, deny: deny)
            policies[role] = policy
            programs[role] = try policy.compile()
        }
    }

    private func install(_ program: [BPFInstruction], synchronizeThreads: Bool) -> Int32 {
        let instructions = program.map { csys_bpf_insn(code: $0.code, jt: $0.jt, jf: $0.jf, k: $0.k) }
        return instructions.withUnsafeBufferPointer {
            csys_seccomp_install($0.baseAddress, UInt16($0.count), synchronizeThreads ? 1 : 0)
        }
    }

    /// A thread's start: its role's filter on top of the base, vCPU affinity.
    func enterThread(_ role: ThreadRole) {
        switch role {
        case .control:
            csys_set_thread_role(roleNames[.control])
        case let .vcpu(index):
            csys_set_thread_role(roleNames[.vcpu])
            let tid = csys_gettid()
            vcpuThreads.withLock { $0.append((index, tid)) }
            if let cpus = settings.cpuAffinity {
                let result = cpus.map(Int32.init).withUnsafeBufferPointer { csys_set_affinity($0.baseAddress, Int32($0.count)) }
                if result != 0 { fatal("cannot pin vCPU \(index) to CPUs \(CPUList.format(cpus)): \(String(cString: strerror(-result)))") }
            }
            if let program = programs[.vcpu] {
                let result = install(program, synchronizeThreads: false)
                if result != 0 { fatal("cannot install the vCPU seccomp filter: \(String(cString: strerror(-result)))") }
            }
            if index == 0 { TestHooks.performForbiddenSyscall() }
            TestHooks.crashIfRequested(in: "vcpu\(index)")
        case let .device(name):
            // The reporter names the device: "… in the virtio-rng device thread" (the string lives
            // as long as the thread, so it is never freed).
            csys_set_thread_role(strdup("\(name) device"))
            if let program = programs[.device] {
                let result = install(program, synchronizeThreads: false)
                if result != 0 { fatal("cannot install the device seccomp filter for \(name): \(String(cString: strerror(-result)))") }
            }
            TestHooks.performDeviceSyscall(device: name)
            TestHooks.crashIfRequested(in: name)
        case .deviceIO:
            csys_set_thread_role(roleNames[.deviceIO])
            if let program = programs[.deviceIO] {
                let result = install(program, synchronizeThreads: false)
                if result != 0 { fatal("cannot install the device I/O seccomp filter: \(String(cString: strerror(-result)))") }
            }
        }
    }

    /// A thread that cannot be isolated must not run the guest: report and end the VMM.
    private func fatal(_ message: String) -> Never {
        reportOnStandardError(message)
        _exit(1)
    }

    // MARK: reporting

    /// The vCPU threads seen so far with the CPUs each may run on now.
    public var vcpuAffinities: [(vcpu: UInt32, tid: Int32, cpus: [Int]?)] {
        vcpuThreads.withLock { $0 }.sorted { $0.vcpu < $1.vcpu }.map { ($0.vcpu, $0.tid, CPUList.affinity(ofThread: $0.tid)) }
    }

    /// What `vireo run -v` prints about isolation (before the guest starts).
    public var summary: [String] {
        var lines: [String] = []
        if let deny = settings.seccomp.denyAction {
            let counts = [SeccompRole.control, .vcpu, .deviceIO].map { role in
                "\(role.rawValue) \(policies[role].map { "\($0.allowedSyscalls.count) syscalls, \(programs[role]?.count ?? 0) BPF instructions" } ?? "-")"
            }
            let how: String
            switch deny {
            case .trap: how = "denied calls are named on stderr and end the VMM (SIGSYS handler)"
            case .killProcess: how = "denied calls kill the VMM (SECCOMP_RET_KILL_PROCESS), reported by the supervisor"
            default: how = "denied calls are only logged by the kernel"
            }
            lines.append("isolation: seccomp \(settings.seccomp.rawValue): \(how); filters: \(counts.joined(separator: "; "))")
        } else {
            lines.append("isolation: seccomp off")
        }
        if let jail {
            lines.append("isolation: jail \(jail.root): mount, PID, IPC, UTS, network namespaces; pivot_root; shares \(jail.mirrors.map { $0.path + ($0.readOnly ? " (ro)" : " (rw)") }.joined(separator: ", ")); devices \(jail.devices.map(\.path).joined(separator: ", "))")
        }
        if jail != nil || user != nil {
            lines.append("isolation: running as \(user.map(\.description) ?? "root"); no_new_privs; all capabilities dropped (effective: \(capabilitiesAfterDrop == 0 ? "none" : "0x" + String(capabilitiesAfterDrop, radix: 16)))")
        }
        if let cgroups {
            for placement in cgroups.placements {
                let writes = cgroups.settings.writes(for: placement).map { "\($0.0)=\($0.1)" }.joined(separator: " ")
                lines.append("isolation: cgroup \(placement.controller): v\(placement.version) \(placement.directory) (\(writes))")
            }
        }
        if let cpus = settings.cpuAffinity {
            lines.append("isolation: vCPU threads (and every other VMM thread) pinned to CPUs \(CPUList.format(cpus))")
        }
        return lines
    }

    /// The control socket's `isolation` object.
    public var status: JSONValue {
        let capabilities = capabilitiesAfterDrop == 0 ? "none" : "0x" + String(capabilitiesAfterDrop, radix: 16)
        let cgroupEntries = (cgroups?.placements ?? []).map { placement in
            JSONValue.object([("controller", .string(placement.controller)), ("version", .int(Int64(placement.version))),
                              ("path", .string(placement.directory))])
        }
        let threads = vcpuAffinities.map { entry in
            JSONValue.object([("vcpu", .int(Int64(entry.vcpu))), ("tid", .int(Int64(entry.tid))),
                              ("cpus", .string(entry.cpus.map(CPUList.format) ?? "?"))])
        }
        func optional<T>(_ value: T?, _ transform: (T) -> JSONValue) -> JSONValue { value.map(transform) ?? .null }
        // Each role's program as installed: its length and an FNV-1a digest of its instructions, so
        // that two VMMs' filters can be compared (a warm-pool VMM's, compiled ahead, against a fresh one's).
        let programEntries = SeccompRole.allCases.compactMap { role -> (String, JSONValue)? in
            guard let program = programs[role] else { return nil }
            var digest: UInt64 = 0xcbf2_9ce4_8422_2325
            for instruction in program {
                for word in [UInt32(instruction.code), UInt32(instruction.jt), UInt32(instruction.jf), instruction.k] {
                    digest = (digest ^ UInt64(word)) &* 0x0000_0100_0000_01b3
                }
            }
            return (role.rawValue, .string("\(program.count) instructions, fnv1a \(String(digest, radix: 16))"))
        }
        return .object([
            ("seccomp", .string(settings.seccomp.rawValue)),
            ("seccomp_programs", .object(programEntries)),
            ("jail", optional(jail) { .string($0.root) }),
            ("uid", .int(Int64(identityAfterDrop.uid))),
            ("gid", .int(Int64(identityAfterDrop.gid))),
            ("no_new_privs", .bool(identityAfterDrop.noNewPrivileges)),
            ("capabilities", .string(capabilities)),
            ("supervised", .bool(supervised)),
            ("cgroups", .array(cgroupEntries)),
            ("cpu_weight", optional(settings.cpuWeight) { .int(Int64($0)) }),
            ("cpu_max", optional(settings.cpuMax) { .string("\($0.quotaMicroseconds) \($0.periodMicroseconds)") }),
            ("memory_max", optional(settings.memoryMax) { .int(Int64(clamping: $0)) }),
            ("cpu_affinity", optional(settings.cpuAffinity) { .string(CPUList.format($0)) }),
            ("vcpu_threads", .array(threads)),
        ])
    }
}

/// The role a VMM thread plays: which seccomp filter it adds and whether it is pinned.
public enum ThreadRole: Sendable {
    /// Main, signal and API threads: the base filter only.
    case control
    /// The exit loop of vCPU `index`: vCPU filter, --cpu-affinity.
    case vcpu(UInt32)
    /// Console input: the device I/O filter.
    case deviceIO
    /// The worker of virtio device `name` (e.g. "virtio-blk0"): the device filter.
    case device(String)

    /// Call first in the thread's body with the plan the VMM runs under (`Machine.run` passes it
    /// on); nil, for a Machine run without isolation, does nothing.
    public func enter(under plan: IsolationPlan?) {
        plan?.enterThread(self)
    }
}

/// Names the calling thread (visible in /proc/<pid>/task/<tid>/comm; at most 15 bytes kept).
func nameCurrentThread(_ name: String) {
    _ = csys_set_thread_name(String(name.utf8.prefix(15))!)
}
