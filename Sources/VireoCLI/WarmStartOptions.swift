/// Which of an image run's `vireo run` options a warm start can honour: the VM's shape (`--cpus`,
/// `--memory`: part of the snapshot's key, given to the warm-up boot) and run-time options of the
/// VMM process (given to the restore). Anything else (a NIC, an rng, a balloon, another vsock, a
/// disk, …) changes the devices a snapshot would have to hold, so such runs boot cold.
struct WarmStartOptions {
    var cpus = ""
    var memory = ""
    /// Options for the warm-up boot: the shape and the syscall filter mode.
    var warmUp: [String] = []
    /// Options for the restoring VMM.
    var restore: [String] = []
    var verbose = false

    static let shapeOptions: Set<String> = ["--cpus", "--memory"]
    static let valuedRunTimeOptions: Set<String> = [
        "--console-log", "--console-log-max", "--api-socket", "--seccomp", "--jail-dir", "--uid", "--gid",
        "--cpu-weight", "--cpu-max", "--memory-max", "--cpu-affinity",
    ]
    static let runTimeFlags: Set<String> = ["-v", "--verbose", "--no-stdin", "--no-console", "--jail"]

    /// The options split for a warm start, or the first option that needs a cold boot.
    static func classify(_ passthrough: [String]) -> Result<WarmStartOptions, ColdReason> {
        var options = WarmStartOptions()
        var index = 0
        while index < passthrough.count {
            let argument = passthrough[index]
            let name = argument.hasPrefix("--") ? String(argument.prefix { $0 != "=" }) : argument
            let inline = name.count < argument.count
            if shapeOptions.contains(name) || valuedRunTimeOptions.contains(name) {
                let value: String
                if inline {
                    value = String(argument.dropFirst(name.count + 1))
                } else {
                    index += 1
                    guard index < passthrough.count else { return .failure(ColdReason(option: name)) }
                    value = passthrough[index]
                }
                if name == "--cpus" { options.cpus = value }
                if name == "--memory" { options.memory = value }
                if shapeOptions.contains(name) || name == "--seccomp" { options.warmUp += [name, value] }
                if !shapeOptions.contains(name) { options.restore += [name, value] }
            } else if runTimeFlags.contains(name) {
                options.restore.append(argument)
                if name == "-v" || name == "--verbose" { options.verbose = true }
            } else {
                return .failure(ColdReason(option: name))
            }
            index += 1
        }
        return .success(options)
    }

    /// An option a warm start cannot honour.
    struct ColdReason: Error {
        let option: String
    }
}
