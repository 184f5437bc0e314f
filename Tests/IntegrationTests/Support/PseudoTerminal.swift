import Foundation

/// A pseudo-terminal for tests: the child gets the slave as stdin/stdout/stderr and controlling
/// terminal (util-linux `setsid --ctty`); the test reads and writes the master.
final class PseudoTerminal: @unchecked Sendable {
    let master: Int32
    let slavePath: String
    private let lock = NSLock()
    private var bytes: [UInt8] = []
    private var reader: Thread?

    init(rows: UInt16, columns: UInt16) throws {
        // posix_openpt and friends need _XOPEN_SOURCE, which Swift's Glibc module does not set: the
        // same through /dev/ptmx and its ioctls (TIOCSPTLCK, TIOCGPTN from <asm-generic/ioctls.h>).
        master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
        var unlock: Int32 = 0
        var number: UInt32 = 0
        guard master >= 0, ioctl(master, UInt(0x4004_5431), &unlock) == 0, ioctl(master, UInt(0x8004_5430), &number) == 0 else {
            throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "no pseudo-terminal: \(String(cString: strerror(errno)))"])
        }
        slavePath = "/dev/pts/\(number)"
        var size = winsize(ws_row: rows, ws_col: columns, ws_xpixel: 0, ws_ypixel: 0)
        _ = ioctl(master, UInt(TIOCSWINSZ), &size)
        let fd = master
        let thread = Thread { [weak self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = read(fd, &buffer, buffer.count)
                if count <= 0 { if count < 0 && errno == EINTR { continue }; return }
                guard let self else { return }
                self.lock.lock()
                self.bytes += buffer[0..<count]
                self.lock.unlock()
            }
        }
        reader = thread
        thread.start()
    }

    /// Starts `command` on the terminal; returns its pid.
    func spawn(_ command: [String], environment: [String: String]) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for fd in Int32(0)...2 { posix_spawn_file_actions_addopen(&actions, fd, slavePath, O_RDWR, 0) }
        let full = ["/usr/bin/setsid", "--ctty"] + command
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        let argv = full.map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, full[0], &actions, nil, argv, envp)
        guard result == 0 else {
            throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "spawn: \(String(cString: strerror(result)))"])
        }
        return pid
    }

    var output: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: bytes, as: UTF8.self)
    }

    func write(_ text: String) {
        let data = Array(text.utf8)
        _ = data.withUnsafeBytes { Glibc.write(master, $0.baseAddress, $0.count) }
    }

    func waitFor(_ text: String, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if output.contains(text) { return true }
            usleep(100_000)
        }
        return output.contains(text)
    }

    /// The exit status (128+N for signal N), or nil after `timeout`.
    func waitForExit(_ pid: pid_t, timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0
        while Date() < deadline {
            if waitpid(pid, &status, WNOHANG) == pid {
                usleep(200_000)  // let the reader drain
                let low = status & 0x7f
                return low == 0 ? (status >> 8) & 0xff : 128 + low
            }
            usleep(100_000)
        }
        return nil
    }

    func reap(_ pid: pid_t) {
        var status: Int32 = 0
        _ = waitpid(pid, &status, WNOHANG)
    }

    deinit { close(master) }
}

/// TCP on 127.0.0.1 for tests.
enum Loopback {
    /// A port nothing listens on right now.
    static func freePort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: 0, sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "bind: \(String(cString: strerror(errno)))"]) }
        return UInt16(bigEndian: address.sin_port)
    }

    /// Connects to 127.0.0.1:`port`, sends `send`, reads one line (at most 10 s) and closes;
    /// returns what it read ("" when the connection failed or ended empty).
    static func exchange(port: UInt16, send: String) -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        var address = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: port.bigEndian, sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else { return "" }
        // Send first, as a client does (observed: passt 2023-03 ended a connection whose host side
        // only waited to read with no data; `nc` sending first got through every time).
        let data = Array(send.utf8)
        _ = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1024)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, received.count < 4096 {
            var wait = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&wait, 1, 500) >= 0 else { break }
            if wait.revents == 0 { continue }
            let count = read(fd, &buffer, buffer.count)
            if count <= 0 { break }
            received += buffer[0..<count]
            if received.contains(UInt8(ascii: "\n")) { break }  // a line: the guest's greeting is whole
        }
        return String(decoding: received, as: UTF8.self)
    }
}
