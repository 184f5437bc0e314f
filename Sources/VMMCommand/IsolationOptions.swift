import ArgumentParser
import VMM

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
}
