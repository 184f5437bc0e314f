import ArgumentParser
import VMM
#if canImport(Glibc)
import Glibc
#endif

/// `vireo run`'s isolation flags (issue 6): seccomp, jail, user, cgroup limits, vCPU affinity.
struct IsolationOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Syscall filters: on (default; a denied call is named on stderr and ends the VMM), kill (the kernel kills the VMM; the supervisor names the call), log (only log would-be denials), off (debugging only). Default: $VIREO_SECCOMP or on.",
        valueName: "mode"))
    var seccomp: String?

    @Flag(name: .long, help: "Run the VMM in its own mount, PID, IPC, UTS and network namespaces, pivot_rooted into a per-VM directory, as --uid (or the 'vireo' user), without capabilities.")
    var jail = false

    @Option(name: .customLong("jail-dir"), help: ArgumentHelp("The jail's directory (default /run/vireo/jail/vm-<pid>); implies --jail.", valueName: "dir"))
    var jailDir: String?

    @Option(name: .long, help: ArgumentHelp("Run the VMM as this user (name or number) once the VM is built.", valueName: "user"))
    var uid: String?

    @Option(name: .long, help: ArgumentHelp("Group for --uid (name or number; default: the user's primary group).", valueName: "group"))
    var gid: String?

    @Option(name: .customLong("cpu-weight"), help: ArgumentHelp("cgroup CPU weight, 1–10000 (default 100; cgroup v1: cpu.shares = weight × 1024 / 100).", valueName: "n"))
    var cpuWeight: Int?

    @Option(name: .customLong("cpu-max"), help: ArgumentHelp("cgroup CPU bandwidth: QUOTA[/PERIOD] in µs or with us/ms/s, e.g. 20ms/100ms (default period 100ms).", valueName: "quota/period"))
    var cpuMax: String?

    @Option(name: .customLong("memory-max"), help: ArgumentHelp("cgroup memory limit for the whole VMM: guest RAM plus VMM overhead (at least 32M more than --memory), e.g. 600M.", valueName: "size"))
    var memoryMax: String?

    @Option(name: .customLong("cpu-affinity"), help: ArgumentHelp("Pin the vCPU threads (and the VMM's other threads) to these host CPUs, e.g. 0,1 or 0-3.", valueName: "cpus"))
    var cpuAffinity: String?

    /// Static checks (formats and ranges); host checks happen in `IsolationPlan.prepare`.
    func validate() throws {
        _ = try settings()
    }

    /// The settings these flags describe.
    func settings() throws -> IsolationSettings {
        var settings = IsolationSettings()
        let environmentMode = getenv("VIREO_SECCOMP").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
        if let mode = seccomp ?? environmentMode {
            guard let parsed = SeccompMode(rawValue: mode) else {
                throw ValidationError("--seccomp must be one of on, kill, log, off; got '\(mode)'")
            }
            settings.seccomp = parsed
        }
        settings.jail = jail || jailDir != nil
        settings.jailDirectory = jailDir
        settings.user = uid
        settings.group = gid
        if let cpuWeight {
            guard CPUWeight.range.contains(cpuWeight) else {
                throw ValidationError("--cpu-weight must be between \(CPUWeight.range.lowerBound) and \(CPUWeight.range.upperBound) (the cgroup cpu.weight range), got \(cpuWeight)")
            }
            settings.cpuWeight = cpuWeight
        }
        if let cpuMax {
            guard let parsed = CPUMax.parse(cpuMax) else {
                throw ValidationError("--cpu-max '\(cpuMax)' is not QUOTA[/PERIOD] (examples: 20ms/100ms, 50000/100000)")
            }
            if let problem = parsed.problem { throw ValidationError("--cpu-max: \(problem)") }
            settings.cpuMax = parsed
        }
        if let memoryMax {
            guard let bytes = ByteSize.parse(memoryMax) else {
                throw ValidationError("--memory-max '\(memoryMax)' is not a size (examples: 600M, 2G)")
            }
            settings.memoryMax = bytes
        }
        if let cpuAffinity {
            guard let cpus = CPUList.parse(cpuAffinity) else {
                throw ValidationError("--cpu-affinity '\(cpuAffinity)' is not a CPU list (examples: 0,1 or 0-3)")
            }
            settings.cpuAffinity = cpus
        }
        return settings
    }
}
