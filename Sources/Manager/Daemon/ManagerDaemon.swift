import Foundation
import Images
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// `vireo serve`: the VM manager daemon.
///
/// Opens the store, re-adopts running VMMs, starts autostart VMs, then serves the REST API on a
/// Unix socket until SIGTERM/SIGINT. Stopping the daemon leaves VMs running; the next daemon on the
/// same state directory adopts them.
public enum ManagerDaemon {
    public static func run(_ configuration: DaemonConfiguration, version: String) async throws {
        umask(0o077)  // the socket, the database and console logs are private unless a group is named
        let stateDirectory = try prepareStateDirectory(configuration.stateDirectory)
        let lock = try lockStateDirectory(stateDirectory)
        defer { close(lock) }
        try prepareSocketPath(configuration.socketPath)
        let gid = try configuration.socketGroup.map(groupID)

        var daemonLogger = Logger(label: "vireo.daemon")
        daemonLogger.logLevel = configuration.logLevel
        let logger = daemonLogger

        let store: Store
        do {
            store = try Store(path: stateDirectory + "/vireo.sqlite")
        } catch {
            throw DaemonError("cannot open the store in \(stateDirectory): \(error)")
        }
        let executable = try configuration.vmmExecutable ?? defaultVMMExecutable()
        var supervisorConfiguration = Supervisor.Configuration(stateDirectory: stateDirectory, vmmExecutable: executable)
        supervisorConfiguration.consoleLogMaxBytes = configuration.consoleLogMaxBytes
        supervisorConfiguration.warmPoolSize = configuration.warmPoolSize
        let events = EventBus()
        var validator = DefinitionValidator(readSnapshot: configuration.readSnapshot)
        let imageRoots = try prepareImageRoots(configuration.imageRoots, stateDirectory: stateDirectory)
        validator.imageRoots = imageRoots
        // Image VMs that name no kernel or initramfs get the daemon's (docs/images.md).
        validator.imageKernel = ProcessInfo.processInfo.environment["VIREO_KERNEL"].flatMap { $0.isEmpty ? nil : $0 }
        validator.imageInitrd = ImageInitramfs.fromEnvironment()
        let supervisor = Supervisor(configuration: supervisorConfiguration, store: store, events: events, logger: logger,
                                    validator: validator)
        try await supervisor.recover()
        await supervisor.startMonitor()

        let shutdown = ShutdownFlag()
        let api = ManagerAPI(supervisor: supervisor, store: store, validator: validator, shutdown: shutdown, version: version)
        let socketPath = configuration.socketPath
        var serverLogger = logger
        serverLogger.logLevel = max(configuration.logLevel, .notice)  // no line per request
        let descriptors = DescriptorLimit.raise()
        let app = Application(
            router: api.buildRouter(),
            server: .http1(configuration: .init(additionalChannelHandlers: [RequestTimeouts(seconds: configuration.requestTimeoutSeconds)])),
            configuration: .init(address: .unixDomainSocket(path: socketPath), serverName: "vireo/\(version)",
                                 availableConnectionsDelegate: MaximumAvailableConnections(
                                     DescriptorLimit.maximumConnections(forLimit: descriptors), logger: serverLogger)),
            onServerRunning: { _ in
                if let gid {
                    chown(socketPath, 0, gid)
                    chmod(socketPath, 0o660)
                } else {
                    chmod(socketPath, 0o600)
                }
                logger.notice("listening", metadata: ["socket": "\(socketPath)", "state": "\(stateDirectory)", "pid": "\(getpid())",
                                                      "imageRoots": "\(imageRoots.directories.joined(separator: ","))"])
                if let reason = JailSupport.unavailableReason {
                    logger.warning("VMMs run without the jail by default: \(reason); each still runs as its own unprivileged uid (docs/security.md)")
                }
            },
            logger: serverLogger
        )
        // Listed after the server so that it hears of the shutdown first (services stop in reverse
        // order): endless streams must end before the server waits for its connections to close.
        let notifier = ShutdownNotifier {
            shutdown.set()
            events.close()
            await supervisor.shutdown()
        }
        let group = ServiceGroup(configuration: .init(
            services: [
                .init(service: app),
                .init(service: notifier, successTerminationBehavior: .ignore),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
        unlink(socketPath)
        logger.notice("stopped; VMs keep running and the next daemon adopts them")
    }

    /// Creates the state directory (0700) and returns its resolved path: VMM working directories
    /// are compared with it when re-adopting.
    static func prepareStateDirectory(_ path: String) throws -> String {
        do {
            try FileManager.default.createDirectory(atPath: path + "/vms", withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw DaemonError("cannot create the state directory \(path): \(error.localizedDescription)")
        }
        guard let resolved = realpath(path, nil) else {
            throw DaemonError("cannot resolve the state directory \(path): \(String(cString: strerror(errno)))")
        }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// The image roots, resolved; with none given, `<state-dir>/images` (created 0700).
    static func prepareImageRoots(_ given: [String], stateDirectory: String) throws -> ImageRoots {
        // The daemon's own image cache is always a root: image VMs' bases and disks live there.
        let cache = stateDirectory + "/images"
        mkdir(cache, 0o700)
        let roots = given.contains(cache) ? given : given + [cache]
        return ImageRoots(try roots.map { root in
            var info = stat()
            guard let resolved = realpath(root, nil) else {
                throw DaemonError("--image-root \(root): \(String(cString: strerror(errno)))")
            }
            defer { free(resolved) }
            let path = String(cString: resolved)
            guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
                throw DaemonError("--image-root \(root) is not a directory")
            }
            return path
        })
    }

    /// One daemon per state directory: two would start every VM twice.
    static func lockStateDirectory(_ directory: String) throws -> Int32 {
        let path = directory + "/daemon.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw DaemonError("cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let owner = ProcessProbe.readSmallFile(path)?.trimming(" \n") ?? "?"
            close(fd)
            throw DaemonError("another vireo daemon (pid \(owner)) is already using the state directory \(directory)")
        }
        ftruncate(fd, 0)
        let text = "\(getpid())\n"
        _ = text.withCString { write(fd, $0, strlen($0)) }
        return fd
    }

    /// Makes the socket's directory and clears a stale socket; refuses if a daemon answers there.
    static func prepareSocketPath(_ path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o755])
            } catch {
                throw DaemonError("cannot create the socket directory \(directory): \(error.localizedDescription)")
            }
        }
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        // Only a stale socket is ever removed: `--socket` naming a regular file (a typo, or a
        // path someone else chose) must not cost that file.
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw DaemonError("\(path) exists and is not a socket; refusing to replace it (remove it or choose another --socket)")
        }
        if let fd = try? UnixSocket.connect(path, timeout: 1) {
            close(fd)
            throw DaemonError("a daemon already listens on \(path)")
        }
        unlink(path)
    }

    static func groupID(_ name: String) throws -> gid_t {
        if let number = gid_t(name) { return number }
        guard let entry = getgrnam(name) else { throw DaemonError("--socket-group: no group named '\(name)'") }
        return entry.pointee.gr_gid
    }

    /// `vireo-vmm` next to this executable when it is there (the lean VMM: less memory per VM),
    /// else this executable itself (`vireo run`).
    static func defaultVMMExecutable() throws -> String {
        let own = try ownExecutable()
        let sibling = (own as NSString).deletingLastPathComponent + "/vireo-vmm"
        return access(sibling, X_OK) == 0 ? sibling : own
    }

    static func ownExecutable() throws -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { throw DaemonError("cannot find the vireo executable (/proc/self/exe)") }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Waits for graceful shutdown, then runs `action` once.
struct ShutdownNotifier: Service {
    let action: @Sendable () async -> Void

    func run() async throws {
        try? await gracefulShutdown()
        await action()
    }
}
