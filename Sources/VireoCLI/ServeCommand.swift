import ArgumentParser
import VMMCommand
import Dispatch
import Logging
import Manager
import VMM
#if canImport(Glibc)
import Glibc
#endif

/// `vireo serve`: the VM manager daemon (REST API on a Unix socket).
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the VM manager daemon: a REST API on a Unix socket.",
        discussion: """
        Each running VM is a 'vireo run' process of its own, started in its own session: VMs keep \
        running when the daemon stops or crashes, and the next daemon on the same state directory \
        re-adopts them. The API is described at GET /openapi.json (docs/api.md).

        Example:
          vireo serve --socket /run/vireo/vireo.sock --state-dir /var/lib/vireo --image-root /srv/vms
        """)

    @Option(name: .long, help: ArgumentHelp("Unix socket of the API.", valueName: "path"))
    var socket: String = DaemonConfiguration.defaultSocketPath

    @Option(name: .customLong("state-dir"), help: ArgumentHelp("Store (SQLite) and per-VM files.", valueName: "dir"))
    var stateDirectory: String = DaemonConfiguration.defaultStateDirectory

    @Option(name: .customLong("image-root"), help: ArgumentHelp("Accept kernels, initrds, disks and snapshots only under this directory (repeatable; default <state-dir>/images; '/' allows any path, making socket access root-equivalent).", valueName: "dir"))
    var imageRoots: [String] = []

    @Option(name: .customLong("socket-group"), help: ArgumentHelp("Let this group use the socket (mode 0660; default 0600, root only).", valueName: "group"))
    var socketGroup: String?

    @Option(name: .customLong("console-log-max"), help: ArgumentHelp("Rotate each VM's console log and vmm.log past this size (default 1M).", valueName: "size"))
    var consoleLogMax: String = "1M"

    @Option(name: .customLong("request-timeout"), help: ArgumentHelp("Close an API connection that leaves a request unfinished (or sends none) for this many seconds; streams the daemon is sending and the interactive console are exempt (default 30).", valueName: "seconds"))
    var requestTimeout: Double = 30

    @Option(name: .customLong("vmm-binary"), help: ArgumentHelp("Executable that runs each VM as '<binary> run …' (default: vireo-vmm next to this vireo, else this vireo).", valueName: "path"))
    var vmmBinary: String?

    @Option(name: .customLong("warm-pool"), help: ArgumentHelp("Keep this many VMM processes started and waiting, so that a VM restored from a snapshot starts without paying for a new process (0-64; default 0). They need the vireo-vmm executable.", valueName: "n"))
    var warmPool: Int = 0

    @Option(name: .customLong("log-level"), help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    var logLevel: String = "info"

    @Option(name: .customLong("log-format"), help: ArgumentHelp("text or json (one JSON object per line).", valueName: "format"))
    var logFormat: String = "text"

    func validate() throws {
        guard let bytes = ByteSize.parse(consoleLogMax), bytes >= 4096, bytes <= 1 << 32 else {
            throw ValidationError("--console-log-max '\(consoleLogMax)' must be a size between 4K and 4G")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical; got '\(logLevel)'")
        }
        guard requestTimeout >= 0.1, requestTimeout <= 86400 else {
            throw ValidationError("--request-timeout must be between 0.1 and 86400 seconds; got \(requestTimeout)")
        }
        if let vmmBinary, access(absolute(vmmBinary), X_OK) != 0 {
            throw ValidationError("--vmm-binary '\(vmmBinary)' is not an executable file")
        }
        guard (0...64).contains(warmPool) else {
            throw ValidationError("--warm-pool must be between 0 and 64; got \(warmPool)")
        }
        guard logFormat == "text" || logFormat == "json" else {
            throw ValidationError("--log-format must be text or json; got '\(logFormat)'")
        }
    }

    func run() throws {
        var configuration = DaemonConfiguration(socketPath: absolute(socket), stateDirectory: absolute(stateDirectory))
        configuration.socketGroup = socketGroup
        configuration.imageRoots = imageRoots.map(absolute)
        configuration.vmmExecutable = vmmBinary.map(absolute)
        configuration.consoleLogMaxBytes = Int(ByteSize.parse(consoleLogMax)!)
        configuration.warmPoolSize = warmPool
        configuration.requestTimeoutSeconds = requestTimeout
        configuration.logLevel = Logger.Level(rawValue: logLevel)!
        configuration.readSnapshot = { directory throws in
            do {
                let summary = try SnapshotSummary.read(directory)
                // A daemon VM configures only disks, NICs and rng: a snapshot with any other device
                // would be refused by the VMM at start, so refuse it now, naming the device.
                if let device = summary.optionalDevices.first {
                    throw DaemonError("snapshot \(directory) holds \(device), which a daemon VM cannot configure; restore it with 'vireo run --restore' and the same device options")
                }
                return SnapshotInfo(kernel: summary.kernelPath, cmdline: summary.commandLine, cpus: summary.cpus,
                                    memoryMiB: Int(summary.memoryBytes >> 20), diskCount: summary.diskCount)
            } catch {
                throw DaemonError("snapshot \(directory): \(error)")
            }
        }
        let level = configuration.logLevel
        let json = logFormat == "json"
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let outcome = DaemonOutcome()
        let done = DispatchSemaphore(value: 0)
        let finalConfiguration = configuration
        Task.detached {
            do { try await ManagerDaemon.run(finalConfiguration, version: vireoVersion) } catch { outcome.set("\(error)") }
            done.signal()
        }
        done.wait()
        if let message = outcome.message { throw DaemonCall.failure(message) }
    }
}

/// The daemon's failure, carried from its task to the main thread.
/// @unchecked Sendable: `value` is only read and written inside `lock.sync` (a serial queue).
private final class DaemonOutcome: @unchecked Sendable {
    private let lock = DispatchQueue(label: "vireo.serve.outcome")
    private var value: String?
    func set(_ message: String) { lock.sync { value = message } }
    var message: String? { lock.sync { value } }
}
