#if canImport(Glibc)
import Glibc
#endif
import VMSpec

/// A `passt` child process serving one `--net user` NIC (user-mode networking, no privileges).
///
/// Vireo makes a connected socket pair and hands passt one end with `--fd 3` (QEMU's stream
/// protocol: 4-byte big-endian length, then the frame); the other end becomes the NIC's backend.
/// The DHCP MTU is 1500, what the NIC offers (no offloads, no merged receive buffers). No socket file is involved, nothing else can connect, and `--fd` implies `--one-off`: passt
/// exits as soon as Vireo's end closes, even if Vireo is killed. passt runs in the foreground, in
/// its own process group (a Ctrl-C on the terminal is Vireo's to handle), with its output in
/// `passt.log` inside a private temporary directory that `stop()` removes. Readiness: passt writes
/// its pid file (`--pid`) once initialised; a passt that exits first is reported with its last log line.
/// @unchecked Sendable: `stopped` is written by `init` and `stop`, both on the VMM's main thread (start-up and teardown), never by a device thread.
final class PasstProcess: @unchecked Sendable {
    let pid: pid_t
    /// Vireo's end of the socket pair (owned by the caller from now on).
    let socket: Int32
    /// A duplicate of `socket` this object owns: `stop` shuts the pair down through it even after
    /// the caller closed `socket` (whose number may then belong to something else).
    private let ownSocket: Int32
    let directory: String
    private var stopped = false

    /// The passt executable on PATH, if any.
    static func locate() -> String? {
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = "\(directory)/passt"
            var info = stat()
            if stat(candidate, &info) == 0, info.st_mode & S_IFMT == S_IFREG, access(candidate, X_OK) == 0 {
                return candidate
            }
        }
        return nil
    }

    /// Starts passt and waits (up to `readyTimeout` seconds) until it is initialised.
    init(options: [String] = [], readyTimeout: Double = 5) throws(VMMError) {
        guard let executable = PasstProcess.locate() else {
            throw .invalidConfiguration("--net user needs passt, which is not installed: apt-get install passt")
        }
        let temporary = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array("\(temporary)/vireo-passt-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw .file(path: temporary, what: "cannot create a directory for passt in", errno: errno)
        }
        directory = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let logPath = "\(directory)/passt.log", pidPath = "\(directory)/passt.pid"

        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            let error = errno
            rmdir(directory)
            throw .invalidConfiguration("--net user: socketpair failed: \(String(cString: strerror(error)))")
        }
        let log = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        // passt writes its pid file after it switched to user nobody (when started as root): give it
        // an empty one it may write, in a directory others can enter but not list.
        let pidFD = open(pidPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if pidFD >= 0 {
            fchmod(pidFD, 0o666)
            close(pidFD)
        }
        chmod(directory, 0o711)

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if log >= 0 {
            posix_spawn_file_actions_adddup2(&actions, log, 1)
            posix_spawn_file_actions_adddup2(&actions, log, 2)
        }
        posix_spawn_file_actions_adddup2(&actions, pair[1], 3)  // dup2 clears close-on-exec
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t(), defaults = sigset_t()
        sigemptyset(&noSignals)
        sigemptyset(&defaults)
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGUSR1] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let arguments = [executable, "--foreground", "--quiet", "--fd", "3", "--pid", pidPath, "--mtu", "1500"] + options
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        argv.append(nil)
        defer { for pointer in argv { free(pointer) } }
        var child: pid_t = 0
        let spawned = posix_spawn(&child, executable, &actions, &attributes, argv, environ)
        close(pair[1])
        if log >= 0 { close(log) }
        guard spawned == 0 else {
            close(pair[0])
            PasstProcess.removeDirectory(directory)
            throw .invalidConfiguration("--net user: cannot start \(executable): \(String(cString: strerror(spawned)))")
        }
        pid = child
        socket = pair[0]
        ownSocket = fcntl(pair[0], F_DUPFD_CLOEXEC, 0)

        // Wait for the pid file (written once passt is initialised) or for passt to give up.
        let deadline = MonotonicClock.now() + readyTimeout
        while PasstProcess.fileSize(pidPath) == 0 {
            var status: Int32 = 0
            if waitpid(child, &status, WNOHANG) == child {
                stopped = true
                let reason = PasstProcess.lastLine(of: logPath) ?? "exit status \(status >> 8 & 0xFF)"
                close(socket)
                if ownSocket >= 0 { close(ownSocket) }
                PasstProcess.removeDirectory(directory)
                throw .invalidConfiguration("--net user: passt exited while starting: \(reason)")
            }
            if MonotonicClock.now() > deadline { break }  // slow host: go on; the socket still works once it is up
            usleep(2_000)
        }
        // Initialised: passt holds its log open and needs neither file again. Removing them now
        // leaves nothing behind when the VMM later runs as a user that could not remove them.
        if PasstProcess.fileSize(pidPath) > 0 { PasstProcess.removeDirectory(directory) }
    }

    /// passt's options for published ports (`-t`/`-u [ADDR/]HOST:GUEST`) and fixed guest addresses
    /// (`-a`, `-n`, `-g`, and `--dns-forward`: the guest's DNS address maps to the host's resolver).
    static func options(ports: [VMSpec.PortForward], ipv4: VMSpec.Net.IPv4?) -> [String] {
        var options: [String] = []
        for port in ports {
            options += [port.transport == .tcp ? "-t" : "-u", (port.hostAddress.map { $0 + "/" } ?? "") + "\(port.hostPort):\(port.guestPort)"]
        }
        if let ipv4 {
            options += ["-a", ipv4.address, "-n", String(ipv4.prefixLength), "-g", ipv4.gateway]
            if let dns = ipv4.dns { options += ["--dns-forward", dns] }
        }
        return options
    }

    deinit { stop() }

    /// Ends passt (it also ends by itself once Vireo's socket end closes) and removes its directory.
    func stop() {
        guard !stopped else { return }
        stopped = true
        kill(pid, SIGTERM)
        // A VMM that dropped to another user may not signal passt (root's, or nobody's once it
        // dropped too): ending our side of the pair ends passt as well (--fd implies --one-off).
        if ownSocket >= 0 {
            shutdown(ownSocket, Int32(SHUT_RDWR))
            close(ownSocket)
        }
        var status: Int32 = 0
        var deadline = MonotonicClock.now() + 2
        var killed = false
        while waitpid(pid, &status, WNOHANG) == 0 {
            if MonotonicClock.now() > deadline {
                if killed { break }  // never block the VMM's exit on a helper it cannot end
                kill(pid, SIGKILL)
                killed = true
                deadline = MonotonicClock.now() + 2
            }
            usleep(2_000)
        }
        PasstProcess.removeDirectory(directory)
    }

    private static func removeDirectory(_ directory: String) {
        for name in ["passt.log", "passt.pid"] { unlink("\(directory)/\(name)") }
        rmdir(directory)
    }

    private static func fileSize(_ path: String) -> Int64 {
        var info = stat()
        return stat(path, &info) == 0 ? Int64(info.st_size) : 0
    }

    /// The last non-empty line of a small log file.
    private static func lastLine(of path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let count = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        return String(decoding: bytes[0..<count], as: UTF8.self).split(separator: "\n").last.map(String.init)
    }
}
