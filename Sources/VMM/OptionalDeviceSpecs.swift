#if canImport(Glibc)
import Glibc
#endif

/// A `--vsock cid=N,socket=PATH` request: the guest's CID and the host-side Unix socket.
public struct VsockSpec: Sendable, Equatable {
    public var cid: UInt64
    public var socketPath: String

    /// CIDs 0–2 are reserved (hypervisor, local, host) and 2^32-1 is VMADDR_CID_ANY.
    public static let cidRange: ClosedRange<UInt64> = 3...0xFFFF_FFFE

    public static func parse(_ text: String) throws(VMMError) -> VsockSpec {
        var cid: UInt64?, socket: String?
        for option in text.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
            if option.hasPrefix("cid=") {
                guard let value = UInt64(option.dropFirst(4)) else {
                    throw .invalidConfiguration("--vsock \(text): cid must be a number between 3 and 4294967294")
                }
                cid = value
            } else if option.hasPrefix("socket=") {
                socket = String(option.dropFirst(7))
            } else {
                throw .invalidConfiguration("--vsock \(text): unknown option '\(option)' (expected cid=N,socket=PATH)")
            }
        }
        guard let cid, let socket, !socket.isEmpty else {
            throw .invalidConfiguration("--vsock needs both parts: --vsock cid=N,socket=PATH")
        }
        guard cidRange.contains(cid) else {
            throw .invalidConfiguration("--vsock cid=\(cid) is out of range: a guest CID is 3 to 4294967294 (0-2 are reserved)")
        }
        // The longest guest-initiated path is PATH_4294967295.
        guard socket.utf8.count + 11 <= 107 else {
            throw .invalidConfiguration("--vsock socket path is too long: \(socket.utf8.count) bytes; at most 96 (PATH_<port> must fit a Unix socket address)")
        }
        return VsockSpec(cid: cid, socketPath: socket)
    }
}

/// A `--balloon` request with an optional initial target (`--balloon-target SIZE`).
public struct BalloonSpec: Sendable, Equatable {
    /// Bytes the balloon should take from the guest at start (a multiple of 4 KiB).
    public var targetBytes: UInt64 = 0

    public init(targetBytes: UInt64 = 0) { self.targetBytes = targetBytes }

    /// Checks the target against guest RAM.
    public func validate(memoryBytes: UInt64) throws(VMMError) {
        guard targetBytes <= memoryBytes else {
            throw .invalidConfiguration("--balloon-target \(ByteSize.format(targetBytes)) is larger than the guest's RAM (\(ByteSize.format(memoryBytes)))")
        }
    }
}

/// A `--virtio-console` request: `PATH` or `file=PATH` (guest output appended to a file), or
/// `socket=PATH` (a Unix socket: a client gets the output and types the input).
public struct ConsoleSpec: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case file, socket }
    public var kind: Kind
    public var path: String

    public static func parse(_ text: String) throws(VMMError) -> ConsoleSpec {
        let spec: ConsoleSpec
        if text.hasPrefix("socket=") {
            spec = ConsoleSpec(kind: .socket, path: String(text.dropFirst(7)))
        } else if text.hasPrefix("file=") {
            spec = ConsoleSpec(kind: .file, path: String(text.dropFirst(5)))
        } else {
            spec = ConsoleSpec(kind: .file, path: text)
        }
        guard !spec.path.isEmpty else {
            throw .invalidConfiguration("--virtio-console needs a path: PATH, file=PATH or socket=PATH")
        }
        return spec
    }
}
