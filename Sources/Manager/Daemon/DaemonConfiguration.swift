import Logging

/// How `vireo serve` runs.
public struct DaemonConfiguration: Sendable {
    /// The API's Unix socket.
    public var socketPath: String
    /// SQLite store and VM directories.
    public var stateDirectory: String
    /// Group that may use the socket (mode 0660); nil keeps it 0600, root only.
    public var socketGroup: String?
    /// Directories whose files VMs may use (`--image-root`); empty means `<state-dir>/images`.
    public var imageRoots: [String] = []
    /// The `vireo` executable that runs VMMs; nil means this process's own executable.
    public var vmmExecutable: String?
    /// Each VM's console log is rotated past this size (one old generation is kept).
    public var consoleLogMaxBytes: Int = 1 << 20
    /// `--warm-pool N`: VMM processes kept started for snapshot restores (0: none).
    public var warmPoolSize = 0
    /// An API connection that keeps the daemon waiting this long for its request is closed
    /// (`--request-timeout`; RequestTimeouts).
    public var requestTimeoutSeconds: Double = 30
    public var logLevel: Logger.Level = .info
    /// JSON lines instead of text on stderr.
    public var jsonLogs = false
    /// Reads and verifies a snapshot directory for `POST /vms {"restore": …}` (the VMM's reader).
    public var readSnapshot: (@Sendable (String) throws -> SnapshotInfo)?

    public static let defaultSocketPath = "/run/vireo/vireo.sock"
    public static let defaultStateDirectory = "/var/lib/vireo"

    public init(socketPath: String = DaemonConfiguration.defaultSocketPath,
                stateDirectory: String = DaemonConfiguration.defaultStateDirectory) {
        self.socketPath = socketPath
        self.stateDirectory = stateDirectory
    }
}

/// Why the daemon cannot start: printed as one line.
public struct DaemonError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
