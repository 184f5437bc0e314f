/// What isolation a VMM gets (issue 6): seccomp filters, a jail, an unprivileged user, cgroup
/// limits and vCPU affinity. `vireo run` fills it from its flags; a daemon that starts VMMs passes
/// `commandLineArguments` to `vireo run`.
public struct IsolationSettings: Equatable, Sendable {
    public var seccomp: SeccompMode = .on
    /// Run in namespaces with a pivot_root jail (`--jail`).
    public var jail = false
    /// The jail's directory (default /run/vireo/jail/<vm id>).
    public var jailDirectory: String?
    /// `--uid`: a user name or number; nil keeps the current user (or `vireo` in a jail).
    public var user: String?
    /// `--gid`: a group name or number; nil takes the user's primary group.
    public var group: String?
    /// A numeric identity (the daemon's per-VM uid): needs no account when it lies in
    /// `UserIdentity.perVMRange`; exclusive with `user`.
    public var uid: UInt32?
    /// The group with `uid`; nil: the same number as `uid`.
    public var gid: UInt32?
    /// Image files are opened beneath these only, never through a link (BeneathRoots); spec only.
    public var imageRoots: [String]?
    /// cgroup v2 cpu.weight (1–10000; v1: cpu.shares = weight × 1024 / 100).
    public var cpuWeight: Int?
    public var cpuMax: CPUMax?
    /// cgroup memory limit for the whole VMM process: guest RAM plus VMM overhead.
    public var memoryMax: UInt64?
    /// CPUs every vCPU thread is pinned to.
    public var cpuAffinity: [Int]?

    public init() {}

    /// The VMM needs no more than this beyond guest RAM (bench/boot measures 14–20 MiB).
    public static let minimumMemoryOverhead = UInt64(SpecLimits.memoryMaxOverheadBytes)

    /// True when any cgroup limit is asked for.
    public var usesCgroups: Bool { cpuWeight != nil || cpuMax != nil || memoryMax != nil }

    /// The `vireo run` flags that reproduce these settings.
    public var commandLineArguments: [String] {
        var arguments = ["--seccomp", seccomp.rawValue]
        if jail { arguments.append("--jail") }
        if let jailDirectory { arguments += ["--jail-dir", jailDirectory] }
        if let user { arguments += ["--uid", user] }
        if let group { arguments += ["--gid", group] }
        if let uid { arguments += ["--uid", String(uid), "--gid", String(gid ?? uid)] }
        if let cpuWeight { arguments += ["--cpu-weight", String(cpuWeight)] }
        if let cpuMax { arguments += ["--cpu-max", "\(cpuMax.quotaMicroseconds)/\(cpuMax.periodMicroseconds)"] }
        if let memoryMax { arguments += ["--memory-max", "\(memoryMax)b"] }
        if let cpuAffinity { arguments += ["--cpu-affinity", CPUList.format(cpuAffinity)] }
        return arguments
    }
}
