/// `vireo-vmm`'s command line, parsed by hand: the same flags, defaults and one-line errors as
/// `vireo run` (ArgumentParser), without linking ArgumentParser and FoundationEssentials into every
/// VMM process (their runtime metadata and start-up scans cost ~3 MiB and several ms per VM; see
/// bench/results/vmm-memory.md).
package enum VMMArguments {
    /// What the command line asks for.
    package enum Command: Sendable {
        case run(RunFlags)
        /// A warm-pool VMM: started by the daemon, waits on descriptor 3 for a VM (WarmPoolMember).
        case pool
        case version
        case help(String)
    }

    /// One `run` flag: its long name, the value's name in messages (nil for a flag without one).
    struct Flag {
        let name: String
        let valueName: String?
    }

    /// `run`'s flags, in `vireo run --help`'s order.
    static let runFlags: [Flag] = [
        Flag(name: "kernel", valueName: "path"), Flag(name: "restore", valueName: "dir"),
        Flag(name: "initrd", valueName: "path"), Flag(name: "cmdline", valueName: "string"),
        Flag(name: "cpus", valueName: "n"), Flag(name: "memory", valueName: "size"),
        Flag(name: "disk", valueName: "path[,readonly][,id=NAME]"), Flag(name: "net", valueName: "user|tap=NAME[,mac=…]"),
        Flag(name: "rng", valueName: nil), Flag(name: "vsock", valueName: "cid=N,socket=PATH"),
        Flag(name: "balloon", valueName: nil), Flag(name: "balloon-target", valueName: "size"),
        Flag(name: "virtio-console", valueName: "PATH|file=PATH|socket=PATH"),
        Flag(name: "console-log", valueName: "file"), Flag(name: "console-log-max", valueName: "size"),
        Flag(name: "api-socket", valueName: "path"), Flag(name: "snapshot-on", valueName: "signal"),
        Flag(name: "snapshot-dir", valueName: "dir"), Flag(name: "no-console", valueName: nil),
        Flag(name: "no-stdin", valueName: nil), Flag(name: "boot", valueName: "protocol"),
        Flag(name: "pit", valueName: "on|off|auto"),
        Flag(name: "debug-exit", valueName: nil), Flag(name: "verbose", valueName: nil),
        Flag(name: "seccomp", valueName: "mode"), Flag(name: "jail", valueName: nil),
        Flag(name: "jail-dir", valueName: "dir"), Flag(name: "uid", valueName: "user"),
        Flag(name: "gid", valueName: "group"), Flag(name: "cpu-weight", valueName: "n"),
        Flag(name: "cpu-max", valueName: "quota/period"), Flag(name: "memory-max", valueName: "size"),
        Flag(name: "cpu-affinity", valueName: "cpus"), Flag(name: "spec", valueName: "file"),
        Flag(name: "help", valueName: nil),
    ]

    /// Parses `arguments` (without the program name): `run [FLAGS]` (also without `run`), `version`, `help`.
    package static func parse(_ arguments: [String]) throws(UsageError) -> Command {
        switch arguments.first {
        case "run": return try parseRun(Array(arguments.dropFirst()))
        case "pool":
            guard arguments.count == 1 else { throw UsageError(unexpected(Array(arguments.dropFirst()))) }
            return .pool
        case "version":
            guard arguments.count == 1 else { throw UsageError(unexpected(Array(arguments.dropFirst()))) }
            return .version
        case "help": return .help(arguments.count > 1 && arguments[1] == "run" ? runHelp : rootHelp)
        case "-h", "--help": return .help(rootHelp)
        default: return try parseRun(arguments)
        }
    }

    private static func parseRun(_ arguments: [String]) throws(UsageError) -> Command {
        var flags = RunFlags()
        var extra: [String] = []
        var index = 0
        var optionsEnded = false
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if optionsEnded || !argument.hasPrefix("-") || argument == "-" {
                extra.append(argument)
                continue
            }
            if argument == "--" { optionsEnded = true; continue }
            if argument == "-h" { return .help(runHelp) }
            if argument == "-v" { flags.verbose = true; continue }
            guard argument.hasPrefix("--") else { throw UsageError("Unknown option '\(argument)'") }
            var name = String(argument.dropFirst(2))
            var attached: String?
            if let equals = name.firstIndex(of: "=") {
                attached = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            guard let flag = runFlags.first(where: { $0.name == name }) else {
                throw UsageError(unknownOption("--" + name))
            }
            guard let valueName = flag.valueName else {
                if let attached {
                    throw UsageError("The option '--\(name)' does not take any value, but '\(attached)' was specified.")
                }
                if name == "help" { return .help(runHelp) }
                setFlag(name, in: &flags)
                continue
            }
            let value: String
            if let attached {
                value = attached
            } else if index < arguments.count && !(arguments[index].hasPrefix("-") && arguments[index].count > 1) {
                value = arguments[index]
                index += 1
            } else {
                throw UsageError("Missing value for '--\(name) <\(valueName)>'")
            }
            try setOption(name, value, valueName: valueName, in: &flags)
        }
        guard extra.isEmpty else { throw UsageError(unexpected(extra)) }
        return .run(flags)
    }

    private static func setFlag(_ name: String, in flags: inout RunFlags) {
        switch name {
        case "rng": flags.rng = true
        case "balloon": flags.balloon = true
        case "no-console": flags.noConsole = true
        case "no-stdin": flags.noStdin = true
        case "debug-exit": flags.debugExit = true
        case "verbose": flags.verbose = true
        case "jail": flags.jail = true
        default: break
        }
    }

    private static func setOption(_ name: String, _ value: String, valueName: String,
                                  in flags: inout RunFlags) throws(UsageError) {
        func integer() throws(UsageError) -> Int {
            guard let number = Int(value) else { throw UsageError("The value '\(value)' is invalid for '--\(name) <\(valueName)>'") }
            return number
        }
        switch name {
        case "kernel": flags.kernel = value
        case "restore": flags.restore = value
        case "initrd": flags.initrd = value
        case "cmdline": flags.cmdline = value
        case "cpus": flags.cpus = try integer()
        case "memory": flags.memory = value
        case "disk": flags.disk.append(value)
        case "net": flags.net.append(value)
        case "vsock": flags.vsock = value
        case "balloon-target": flags.balloonTarget = value
        case "virtio-console": flags.virtioConsole = value
        case "console-log": flags.consoleLog = value
        case "console-log-max": flags.consoleLogMax = value
        case "api-socket": flags.apiSocket = value
        case "snapshot-on": flags.snapshotOn = value
        case "snapshot-dir": flags.snapshotDir = value
        case "boot": flags.boot = value
        case "pit": flags.pit = value
        case "seccomp": flags.seccomp = value
        case "jail-dir": flags.jailDir = value
        case "uid": flags.uid = value
        case "gid": flags.gid = value
        case "cpu-weight": flags.resources.cpuWeight = try integer()
        case "cpu-max": flags.resources.cpuMax = value
        case "memory-max": flags.resources.memoryMax = value
        case "cpu-affinity": flags.resources.cpuAffinity = value
        case "spec": flags.spec = value
        default: break
        }
    }

    /// ArgumentParser's words, with its "Did you mean" for a long name within edit distance 3.
    private static func unknownOption(_ option: String) -> String {
        let candidates = runFlags.map { "--" + $0.name }
        let closest = candidates.map { ($0, editDistance($0, option)) }.filter { $0.1 < 4 }.min { $0.1 < $1.1 }
        if let closest { return "Unknown option '\(option)'. Did you mean '\(closest.0)'?" }
        return "Unknown option '\(option)'"
    }

    private static func unexpected(_ values: [String]) -> String {
        values.count == 1 ? "Unexpected argument '\(values[0])'"
            : "\(values.count) unexpected arguments: '\(values.joined(separator: "', '"))'"
    }

    private static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.utf8), b = Array(b.utf8)
        guard !a.isEmpty else { return b.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + [Int](repeating: 0, count: b.count)
            for j in stride(from: 1, through: b.count, by: 1) {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }

    static let rootHelp = """
        OVERVIEW: Vireo's VMM: runs one VM (as 'vireo run' does), without the manager's code.

        USAGE: vireo-vmm <subcommand>

        SUBCOMMANDS:
          run (default)           Boot a kernel in a new VM, with its serial console on this terminal.
          version                 Print Vireo's version and the host's KVM kind.
          pool                    (for 'vireo serve --warm-pool') Wait on descriptor 3 for a VM to restore.

          See 'vireo-vmm help run' for the flags of run.
        """

    static var runHelp: String {
        var text = "OVERVIEW: Boot a kernel in a new VM, or restore a snapshot, as 'vireo run' does.\n\n"
        text += "USAGE: vireo-vmm run [OPTIONS]\n\nOPTIONS (what each one does: 'vireo run --help'):\n"
        for flag in runFlags {
            let short = flag.name == "verbose" ? "-v, " : flag.name == "help" ? "-h, " : ""
            text += "  \(short)--\(flag.name)\(flag.valueName.map { " <\($0)>" } ?? "")\n"
        }
        return text
    }
}
