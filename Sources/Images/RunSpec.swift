/// What the guest init runs: the image config's ENTRYPOINT/CMD/Env/WorkingDir/User with the
/// command line's overrides applied, as Docker applies them.
public struct RunSpec: Sendable, Equatable {
    public var arguments: [String]
    public var environment: [String]
    public var workingDirectory: String
    public var user: String
    public var hostname: String
    /// Whether the host's stdout is a terminal (the guest keeps its \n → \r\n translation then).
    public var terminal = false
    /// `-t`: the console is the program's terminal in cooked mode (echo, ^C as SIGINT) with this size.
    public var terminalSize: TerminalSize?
    /// eth0's fixed addresses (the ones the host gave passt); nil: no NIC, loopback only.
    public var network: Network?
    /// `--ulimit`s the init sets before it runs the program.
    public var resourceLimits: [ResourceLimit] = []

    public init(arguments: [String], environment: [String], workingDirectory: String, user: String, hostname: String) {
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.user = user
        self.hostname = hostname
    }

    /// The overrides a user can give on the command line.
    public struct Overrides: Sendable {
        /// Arguments after the image: they replace CMD (ENTRYPOINT stays).
        public var command: [String] = []
        public var entrypoint: String?
        /// `KEY=VALUE`, or `KEY` to pass the host's value.
        public var environment: [String] = []
        public var workingDirectory: String?
        public var user: String?
        public var hostname: String?
        public init() {}
    }

    static let defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// Combines the image config with the overrides; `hostEnvironment` resolves bare `--env KEY`.
    public static func make(config: ImageConfiguration, overrides: Overrides, hostEnvironment: [String: String],
                            defaultHostname: String) throws -> RunSpec {
        let image = config.config
        let entrypoint = overrides.entrypoint.map { $0.isEmpty ? [] : [$0] } ?? (image?.Entrypoint ?? [])
        // Docker: a new entrypoint drops the image's CMD too.
        let command = !overrides.command.isEmpty ? overrides.command : (overrides.entrypoint != nil ? [] : (image?.Cmd ?? []))
        let arguments = entrypoint + command
        guard !arguments.isEmpty else {
            throw ImageError("the image has no ENTRYPOINT or CMD: give a command after the image (vireo run --image REF -- CMD ARGS…)")
        }
        var environment = image?.Env ?? []
        for item in overrides.environment {
            let assignment: String
            if item.contains("=") {
                assignment = item
            } else {
                guard let value = hostEnvironment[item] else { continue }
                assignment = item + "=" + value
            }
            let key = assignment.prefix { $0 != "=" }
            guard !key.isEmpty else { throw ImageError("--env '\(item)' has no variable name") }
            environment.removeAll { $0.prefix { $0 != "=" } == key }
            environment.append(assignment)
        }
        if !environment.contains(where: { $0.hasPrefix("PATH=") }) { environment.insert(defaultPath, at: 0) }
        let hostname = overrides.hostname ?? defaultHostname
        if !environment.contains(where: { $0.hasPrefix("HOSTNAME=") }) { environment.append("HOSTNAME=" + hostname) }
        if !environment.contains(where: { $0.hasPrefix("HOME=") }) { environment.append("HOME=/root") }
        let workingDirectory = overrides.workingDirectory ?? (image?.WorkingDir.flatMap { $0.isEmpty ? nil : $0 } ?? "/")
        guard workingDirectory.hasPrefix("/") else { throw ImageError("the working directory '\(workingDirectory)' must be absolute") }
        let user = overrides.user ?? (image?.User ?? "")
        for value in arguments + environment + [workingDirectory, user, hostname] where value.utf8.contains(0) {
            throw ImageError("'\(value.replacingOccurrences(of: "\0", with: "\\0"))' contains a NUL byte")
        }
        return RunSpec(arguments: arguments, environment: environment, workingDirectory: workingDirectory,
                       user: user, hostname: hostname)
    }
}
