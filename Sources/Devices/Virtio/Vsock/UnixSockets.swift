#if canImport(Glibc)
import Glibc
#endif

/// Why a Unix socket could not be set up.
public struct UnixSocketError: Error, Equatable, CustomStringConvertible {
    public let path: String
    public let message: String
    public var description: String { "\(path): \(message)" }
}

/// AF_UNIX stream sockets for device backends (non-blocking, close-on-exec).
public enum UnixSockets {
    /// Longest path a sockaddr_un holds (107 bytes plus the terminator).
    public static let maxPathLength = 107

    static func withAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count <= maxPathLength else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    static func newSocket() -> Int32 {
        socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
    }

    /// Binds and listens on `path` (mode 0600). A stale socket nobody listens on is replaced; a live
    /// one or any other kind of file is an error.
    public static func listen(path: String, backlog: Int32 = 64) throws(UnixSocketError) -> Int32 {
        guard path.utf8.count <= maxPathLength else {
            throw UnixSocketError(path: path, message: "path is too long for a Unix socket (\(path.utf8.count) bytes; the limit is \(maxPathLength))")
        }
        var info = stat()
        if lstat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFSOCK else {
                throw UnixSocketError(path: path, message: "exists and is not a socket")
            }
            if let probe = try? connect(path: path) {
                close(probe)
                throw UnixSocketError(path: path, message: "another process is listening on it")
            }
            unlink(path)
        }
        let fd = newSocket()
        guard fd >= 0 else { throw UnixSocketError(path: path, message: "socket: \(String(cString: strerror(errno)))") }
        let bound = withAddress(path) { bind(fd, $0, $1) } ?? -1
        guard bound == 0 else {
            let error = errno
            close(fd)
            throw UnixSocketError(path: path, message: "cannot create the socket: \(String(cString: strerror(error)))")
        }
        guard chmod(path, 0o600) == 0, Glibc.listen(fd, backlog) == 0 else {
            let error = errno
            close(fd)
            unlink(path)
            throw UnixSocketError(path: path, message: "cannot listen: \(String(cString: strerror(error)))")
        }
        return fd
    }

    /// Connects to the socket at `path` without blocking (a Unix connect completes at once or fails).
    public static func connect(path: String) throws(UnixSocketError) -> Int32 {
        let fd = newSocket()
        guard fd >= 0 else { throw UnixSocketError(path: path, message: "socket: \(String(cString: strerror(errno)))") }
        guard let result = withAddress(path, { Glibc.connect(fd, $0, $1) }) else {
            close(fd)
            throw UnixSocketError(path: path, message: "path is too long for a Unix socket")
        }
        guard result == 0 else {
            let error = errno
            close(fd)
            throw UnixSocketError(path: path, message: String(cString: strerror(error)))
        }
        return fd
    }
}
