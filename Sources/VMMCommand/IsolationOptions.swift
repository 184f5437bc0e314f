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

    /// The resources and isolation these flags describe (formats here; limits in SpecValidator,
    /// host checks in `IsolationPlan.prepare`). An unset `--seccomp` takes `$VIREO_SECCOMP`.
    func specParts() throws -> (VMSpec.Resources, VMSpec.Isolation) {
        let isolation = VMSpec.Isolation(seccomp: try IsolationOptions.seccompMode(seccomp), jail: jail || jailDir != nil,
                                         jailDirectory: jailDir, user: uid, group: gid)
        let cpuMax = try resources.parsedCPUMax().map {
            VMSpec.Resources.CPUMax(quotaMicros: $0.quotaMicroseconds, periodMicros: $0.periodMicroseconds)
        }
        let limits = VMSpec.Resources(cpuWeight: resources.cpuWeight, cpuMax: cpuMax,
                                      memoryMaxBytes: try resources.parsedMemoryMax().map { Int64(clamping: $0) },
                                      cpuAffinity: try resources.parsedAffinity())
        return (limits, isolation)
    }

    /// `--seccomp MODE`, else `$VIREO_SECCOMP`, else nil (the VMM's default); one-line error when unknown.
    static func seccompMode(_ flag: String?) throws -> SeccompMode? {
        let environmentMode = getenv("VIREO_SECCOMP").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
        guard let mode = flag ?? environmentMode else { return nil }
        guard let parsed = SeccompMode(rawValue: mode) else {
            throw ValidationError("--seccomp must be one of \(SeccompMode.allCases.map(\.rawValue).joined(separator: ", ")); got '\(mode)'")
        }
        return parsed
    }
}
