import ArgumentParser
import VMMCommand
import Manager

/// One lifecycle action on VMs: `POST /vms/NAME/<action>` for each name, like `docker start a b`.
protocol LifecycleCommand: ParsableCommand {
    static var action: String { get }
    var names: [String] { get }
    var options: ClientOptions { get }
    /// Query string for the action (e.g. a stop timeout).
    var query: String { get }
}

extension LifecycleCommand {
    var query: String { "" }

    func run() throws {
        for name in names {
            _ = try DaemonCall.send(options, "POST", "/vms/\(DaemonCall.path(name))/\(Self.action)\(query)")
            print(name)
        }
    }
}

/// `vireo start NAME…`
struct StartCommand: LifecycleCommand {
    static let configuration = CommandConfiguration(commandName: "start", abstract: "Start VMs (returns once each is running).")
    static let action = "start"
    @Argument(help: "VM names.") var names: [String]
    @OptionGroup var options: ClientOptions
}

/// `vireo stop NAME… [--time S]`
struct StopCommand: LifecycleCommand {
    static let configuration = CommandConfiguration(commandName: "stop", abstract: "Stop VMs: graceful stop, then kill after the timeout.")
    static let action = "stop"
    @Argument(help: "VM names.") var names: [String]
    @Option(name: [.short, .long], help: ArgumentHelp("Seconds to wait before killing (default 10).", valueName: "seconds"))
    var time: Int?
    @OptionGroup var options: ClientOptions
    var query: String { time.map { "?timeout=\($0)" } ?? "" }
}

/// `vireo kill NAME…`
struct KillCommand: LifecycleCommand {
    static let configuration = CommandConfiguration(commandName: "kill", abstract: "Kill VMs' VMM processes at once.")
    static let action = "kill"
    @Argument(help: "VM names.") var names: [String]
    @OptionGroup var options: ClientOptions
}

/// `vireo pause NAME…`
struct PauseCommand: LifecycleCommand {
    static let configuration = CommandConfiguration(commandName: "pause", abstract: "Pause VMs (vCPUs parked, guest clock frozen).")
    static let action = "pause"
    @Argument(help: "VM names.") var names: [String]
    @OptionGroup var options: ClientOptions
}

/// `vireo resume NAME…`
struct ResumeCommand: LifecycleCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Resume paused VMs.")
    static let action = "resume"
    @Argument(help: "VM names.") var names: [String]
    @OptionGroup var options: ClientOptions
}

/// `vireo restart NAME… [--time S]`
struct RestartCommand: LifecycleCommand {
    static let configuration = CommandConfiguration(commandName: "restart", abstract: "Stop and start running VMs.")
    static let action = "restart"
    @Argument(help: "VM names.") var names: [String]
    @Option(name: [.short, .long], help: ArgumentHelp("Seconds to wait for the stop before killing (default 10).", valueName: "seconds"))
    var time: Int?
    @OptionGroup var options: ClientOptions
    var query: String { time.map { "?timeout=\($0)" } ?? "" }
}

/// `vireo rm NAME… [-f]`
struct RemoveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Delete VMs (their definition, console log and state).")
    @Argument(help: "VM names.") var names: [String]
    @Flag(name: [.short, .long], help: "Kill running VMs first.") var force = false
    @OptionGroup var options: ClientOptions

    func run() throws {
        for name in names {
            _ = try DaemonCall.send(options, "DELETE", "/vms/\(DaemonCall.path(name))\(force ? "?force=true" : "")")
            print(name)
        }
    }
}
