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

    @OptionGroup var resources: ResourceOptions

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
        if let cpuWeight = resources.cpuWeight {
            guard CPUWeight.range.contains(cpuWeight) else {
                throw ValidationError("--cpu-weight must be between \(CPUWeight.range.lowerBound) and \(CPUWeight.range.upperBound) (the cgroup cpu.weight range), got \(cpuWeight)")
            }
            settings.cpuWeight = cpuWeight
        }
        if let parsed = try resources.parsedCPUMax() {
            if let problem = parsed.problem { throw ValidationError("--cpu-max: \(problem)") }
            settings.cpuMax = parsed
        }
        settings.memoryMax = try resources.parsedMemoryMax()
        settings.cpuAffinity = try resources.parsedAffinity()
        return settings
    }
}
