#if canImport(Glibc)
import Glibc
#endif
import VMSpec

/// A `--disk PATH[,readonly][,id=NAME][,backing=BASE]` request.
public struct DiskSpec: Sendable, Equatable {
    public var path: String
    public var readOnly = false
    /// Serial reported by VIRTIO_BLK_T_GET_ID (at most 20 bytes); defaults to the file name.
    public var id: String
    /// With a base image, `path` is a copy-on-write overlay over it (created when missing): the
    /// base is only read, the guest's writes go to the overlay.
    public var backing: String?

    public init(path: String, readOnly: Bool = false, id: String, backing: String? = nil) {
        self.path = path
        self.readOnly = readOnly
        self.id = id
        self.backing = backing
    }

    /// Parses the flag's value; errors name the part that is wrong.
    public static func parse(_ text: String) throws(VMMError) -> DiskSpec {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard let path = parts.first, !path.isEmpty else {
            throw .invalidConfiguration("--disk needs a path: --disk PATH[,readonly][,id=NAME][,backing=BASE]")
        }
        let name = path.split(separator: "/").last.map(String.init) ?? path
        var spec = DiskSpec(path: path, id: String(decoding: name.utf8.prefix(20), as: UTF8.self))
        for option in parts.dropFirst() {
            if option == "readonly" || option == "ro" {
                spec.readOnly = true
            } else if option.hasPrefix("id=") {
                let id = String(option.dropFirst(3))
                guard !id.isEmpty, id.utf8.count <= 20, id.allSatisfy({ $0.isASCII && !$0.isWhitespace && $0 != "," }) else {
                    throw .invalidConfiguration("--disk \(text): id must be 1–20 printable ASCII characters")
                }
                spec.id = id
            } else if option.hasPrefix("backing=") {
                let base = String(option.dropFirst(8))
                guard !base.isEmpty else { throw .invalidConfiguration("--disk \(text): backing= needs the base image's path") }
                spec.backing = base
            } else {
                throw .invalidConfiguration("--disk \(text): unknown option '\(option)' (expected readonly, id=NAME or backing=BASE)")
            }
        }
        if spec.readOnly && spec.backing != nil {
            throw .invalidConfiguration("--disk \(text): an overlay takes the guest's writes; attach the base itself with ,readonly for a read-only disk")
        }
        return spec
    }

    /// Checks the image before anything starts: exists, regular file, readable, writable unless readonly.
    public func validate() throws(VMMError) {
        if let backing { return try validateOverlay(base: backing) }
        var info = stat()
        guard stat(path, &info) == 0 else { throw .file(path: path, what: "cannot use disk image", errno: errno) }
        guard (info.st_mode & S_IFMT) == S_IFREG || (info.st_mode & S_IFMT) == S_IFBLK else {
            throw .invalidConfiguration("disk image \(path) is not a regular file or block device")
        }
        guard access(path, R_OK) == 0 else { throw .file(path: path, what: "cannot read disk image", errno: errno) }
        if !readOnly && access(path, W_OK) != 0 {
            throw .invalidConfiguration("disk image \(path) is not writable: add ,readonly to attach it read-only")
        }
    }
}

extension DiskSpec {
    /// The base must be a readable image; the overlay is either an existing writable file or
    /// is created in a writable directory.
    private func validateOverlay(base: String) throws(VMMError) {
        guard base != path else { throw .invalidConfiguration("--disk \(path): an overlay cannot be its own base") }
        var info = stat()
        guard stat(base, &info) == 0 else { throw .file(path: base, what: "cannot use base image", errno: errno) }
        guard (info.st_mode & S_IFMT) == S_IFREG || (info.st_mode & S_IFMT) == S_IFBLK, access(base, R_OK) == 0 else {
            throw .invalidConfiguration("base image \(base) is not a readable regular file or block device")
        }
        if stat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFREG, access(path, R_OK | W_OK) == 0 else {
                throw .invalidConfiguration("overlay \(path) is not a writable regular file")
            }
        } else {
            let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
            guard access(directory.isEmpty ? "/" : directory, W_OK) == 0 else {
                throw .invalidConfiguration("overlay \(path) cannot be created: \(directory) is not writable")
            }
        }
    }
}

/// A `--net user[,mac=…][,publish=[IP:]HOST:GUEST[/tcp|udp]…][,address=A/N,gateway=G[,dns=D]]` or
/// `--net tap=NAME[,mac=…]` request.
public struct NetSpec: Sendable, Equatable {
    public enum Backend: Sendable, Equatable {
        /// User-mode networking through passt (no root needed).
        case user
        /// A TAP device (created if missing; needs CAP_NET_ADMIN).
        case tap(String)
    }

    public var backend: Backend
    public var mac: [UInt8]
    /// Host ports passt publishes to the guest (user only).
    public var ports: [VMSpec.PortForward] = []
    /// Addresses passt hands the guest instead of the host's (user only).
    public var ipv4: VMSpec.Net.IPv4?

    public init(backend: Backend, mac: [UInt8], ports: [VMSpec.PortForward] = [], ipv4: VMSpec.Net.IPv4? = nil) {
        self.backend = backend
        self.mac = mac
        self.ports = ports
        self.ipv4 = ipv4
    }

    public static func parse(_ text: String, index: Int) throws(VMMError) -> NetSpec {
        let parts = text.split(separator: ",").map(String.init)
        let backend: Backend
        switch parts.first {
        case "user": backend = .user
        case let first? where first.hasPrefix("tap="):
            let name = String(first.dropFirst(4))
            guard !name.isEmpty, name.utf8.count < 16, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") }) else {
                throw .invalidConfiguration("--net \(text): TAP name must be 1–15 letters, digits, '-', '_' or '.'")
            }
            backend = .tap(name)
        default:
            throw .invalidConfiguration("--net \(text): expected user or tap=NAME")
        }
        var spec = NetSpec(backend: backend, mac: NetSpec.defaultMAC(index: index))
        var address: String?, gateway: String?, dns: String?
        for option in parts.dropFirst() {
            let (key, value) = option.firstIndex(of: "=").map { (String(option[..<$0]), String(option[option.index(after: $0)...])) } ?? (option, "")
            switch key {
            case "mac":
                guard let parsed = NetSpec.parseMAC(value) else {
                    throw .invalidConfiguration("--net \(text): '\(value)' is not a MAC address (six hex bytes, e.g. 52:54:00:12:34:56)")
                }
                guard parsed[0] & 1 == 0 else {
                    throw .invalidConfiguration("--net \(text): \(value) is a multicast address; a NIC needs a unicast MAC")
                }
                spec.mac = parsed
            case "publish" where backend == .user:
                do { spec.ports.append(try VMSpec.PortForward.parse(value)) } catch {
                    throw .invalidConfiguration("--net \(text): publish=\(error)")
                }
            case "address" where backend == .user: address = value
            case "gateway" where backend == .user: gateway = value
            case "dns" where backend == .user: dns = value
            default:
                throw .invalidConfiguration("--net \(text): unknown option '\(option)' (expected mac=XX:XX:XX:XX:XX:XX\(backend == .user ? ", publish=[IP:]HOST:GUEST[/tcp|udp], address=A.B.C.D/N, gateway=A.B.C.D, dns=A.B.C.D" : ""))")
            }
        }
        if address != nil || gateway != nil || dns != nil {
            let pieces = address?.split(separator: "/").map(String.init) ?? []
            guard pieces.count == 2, let prefix = Int(pieces[1]), let gateway else {
                throw .invalidConfiguration("--net \(text): fixed addresses need address=A.B.C.D/N and gateway=A.B.C.D")
            }
            spec.ipv4 = VMSpec.Net.IPv4(address: pieces[0], prefixLength: prefix, gateway: gateway, dns: dns)
        }
        return spec
    }

    /// Locally administered default, distinct per device: 52:54:00:12:34:5N (QEMU's convention).
    public static func defaultMAC(index: Int) -> [UInt8] {
        [0x52, 0x54, 0x00, 0x12, 0x34, UInt8(truncatingIfNeeded: 0x56 + index)]
    }

    static func parseMAC(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard part.count == 2, let byte = UInt8(part, radix: 16) else { return nil }
            bytes.append(byte)
        }
        return bytes
    }
}
