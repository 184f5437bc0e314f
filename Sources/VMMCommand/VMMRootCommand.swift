import ArgumentParser

/// `vireo-vmm`: the lean VMM executable (only `run` and `version`). The daemon runs each VM with it
/// when it sits next to `vireo`: it links no HTTP server, SQLite or Foundation, so every VMM
/// process costs less memory than the full `vireo` binary would.
public struct VMMRootCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "vireo-vmm",
        abstract: "Vireo's VMM: runs one VM (as 'vireo run' does), without the manager's code.",
        subcommands: [RunCommand.self, VersionCommand.self],
        defaultSubcommand: RunCommand.self)

    public init() {}

    /// Parses the process arguments and runs.
    public static func runMain() -> Never {
        runCommandLine(VMMRootCommand.self)
    }
}
