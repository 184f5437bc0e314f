#if canImport(Glibc)
import Glibc
#endif

/// A failed socket call: what was attempted, on which path, and errno.
public struct SocketError: Error, Sendable, CustomStringConvertible {
    public let what: String
    public let path: String
    public let code: Int32
    public var description: String { "\(what) \(path): \(String(cString: strerror(code)))" }
    /// Nobody listens there (no such file, or a stale socket).
    public var isNotListening: Bool { code == ENOENT || code == ECONNREFUSED || code == ENOTSOCK }
}

/// Blocking Unix stream sockets: connect (any path length), send all, receive with a timeout.
public enum UnixSocket {
    /// The pid of the process at the other end of a connected socket (SO_PEERCRED).
    public static func peerPID(_ fd: Int32) -> Int32? {
        var credentials = (pid: Int32(0), uid: UInt32(0), gid: UInt32(0))  // struct ucred
        var length = socklen_t(MemoryLayout.size(ofValue: credentials))
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0, credentials.pid > 0 else { return nil }
        return credentials.pid
    }

    /// Connects to `path`. Paths longer than sun_path (107 bytes) go through `/proc/self/fd/N/`
    /// of a descriptor of their directory, so deep state directories still work.
    public static func connect(_ path: String, timeout: Double = 5) throws(SocketError) -> Int32 {
        var directoryFD: Int32 = -1
        defer { if directoryFD >= 0 { close(directoryFD) } }
        var target = path
        if path.utf8.count >= 108 {
            let slash = path.lastIndex(of: "/") ?? path.startIndex
            let directory = String(path[..<slash])
            directoryFD = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard directoryFD >= 0 else { throw SocketError(what: "cannot open the directory of", path: path, code: errno) }
            target = "/proc/self/fd/\(directoryFD)/\(path[path.index(after: slash)...])"
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError(what: "cannot create a socket for", path: path, code: errno) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(target.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw SocketError(what: "socket path too long:", path: path, code: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        setTimeout(fd, seconds: timeout)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            let code = errno
            close(fd)
            throw SocketError(what: "cannot connect to", path: path, code: code)
        }
        return fd
    }

    /// Sets both the receive and send timeout (0: none).
    public static func setTimeout(_ fd: Int32, seconds: Double) {
        var value = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Writes every byte (MSG_NOSIGNAL: a closed peer is an error, not SIGPIPE).
    public static func sendAll(_ fd: Int32, _ bytes: some Collection<UInt8>) throws(SocketError) {
        let array = Array(bytes)
        var offset = 0
        while offset < array.count {
            let sent = array.withUnsafeBytes { raw in
                send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if sent < 0 {
                if errno == EINTR { continue }
                throw SocketError(what: "cannot write to", path: "socket", code: errno)
            }
            offset += sent
        }
    }

    /// Reads up to `max` bytes; empty at end of stream.
    public static func receive(_ fd: Int32, max: Int = 65536) throws(SocketError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: max)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR { continue }
                throw SocketError(what: "cannot read from", path: "socket", code: errno)
            }
            return Array(buffer[0..<count])
        }
    }

    /// Reads one `\n`-terminated line (without the newline); `rest` receives bytes past it.
    public static func readLine(_ fd: Int32, limit: Int = 65536, rest: inout [UInt8]) throws(SocketError) -> String {
        var line: [UInt8] = []
        while true {
            let chunk = try receive(fd, max: 4096)
            guard !chunk.isEmpty else { throw SocketError(what: "connection closed before a full line from", path: "socket", code: ECONNRESET) }
            if let newline = chunk.firstIndex(of: UInt8(ascii: "\n")) {
                line += chunk[..<newline]
                rest = Array(chunk[(newline + 1)...])
                return String(decoding: line, as: UTF8.self)
            }
            line += chunk
            guard line.count <= limit else { throw SocketError(what: "line too long from", path: "socket", code: EMSGSIZE) }
        }
    }
}
