import Foundation

/// Unix stream sockets by path (sun_path holds at most 107 bytes and a NUL).
enum UnixSocket {
    static let maximumPath = 107

    static func address(_ path: String) throws -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count <= maximumPath else { throw TTRPCError("socket path too long (\(bytes.count) > \(maximumPath) bytes): \(path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        return address
    }

    static func connect(_ path: String) throws -> Int32 {
        var address = try address(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TTRPCError("socket: \(String(cString: strerror(errno)))") }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw TTRPCError("connect \(path): \(reason)")
        }
        return fd
    }

    /// A listening socket at `path` (mode 0600 before anyone can connect; the file must not exist).
    static func listen(_ path: String) throws -> Int32 {
        var address = try address(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TTRPCError("socket: \(String(cString: strerror(errno)))") }
        let oldMask = umask(0o177)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        umask(oldMask)
        guard bound == 0, Glibc.listen(fd, 64) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw TTRPCError("listen on \(path): \(reason)")
        }
        return fd
    }
}

/// The shim's diagnostics: stderr, which the serving shim points at containerd's `log` FIFO.
enum ShimLog {
    static func write(_ line: String) {
        let text = "containerd-shim-vireo-v2: \(line)\n"
        _ = text.withCString { Glibc.write(2, $0, strlen($0)) }
    }
}
