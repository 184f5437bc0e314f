#if canImport(Glibc)
import Glibc
#endif

/// The run's second disk (/dev/vdb): the RunSpec for guest/image-init.c, and the block the init
/// writes the program's exit status to. Layout (see image-init.c): "VIREOCF1", u32 LE length,
/// records "<tag><value>\0" (tags: image-init.c and image-setup.c); at 4096 "VIREOST1<status>\0".
public enum GuestConfigDisk {
    static let statusOffset = 4096
    static let maxRecords = 1 << 20

    /// The disk's bytes for `spec`.
    public static func encode(_ spec: RunSpec) throws -> [UInt8] {
        var records: [UInt8] = []
        func add(_ tag: Character, _ value: String) {
            records.append(UInt8(ascii: tag.unicodeScalars.first!))
            records += Array(value.utf8)
            records.append(0)
        }
        for argument in spec.arguments { add("A", argument) }
        for variable in spec.environment { add("E", variable) }
        add("W", spec.workingDirectory)
        if !spec.user.isEmpty { add("U", spec.user) }
        add("H", spec.hostname)
        if spec.terminal { add("T", "") }
        if let size = spec.terminalSize { add("Y", "\(size.rows) \(size.columns)") }
        if let network = spec.network {
            add("N", "\(network.address)/\(network.prefixLength)")
            add("G", network.gateway)
            if let dns = network.dns { add("D", dns) }
        }
        for limit in spec.resourceLimits {
            // RLIM_INFINITY is all ones; the init reads the numbers with strtoull.
            add("R", "\(limit.resource) \(limit.soft ?? UInt64.max) \(limit.hard ?? UInt64.max)")
        }
        guard records.count <= maxRecords else { throw ImageError("the command and environment are too large (\(records.count) bytes; limit 1 MiB)") }
        let length = UInt32(records.count)
        var disk = Array("VIREOCF1".utf8) + [UInt8(length & 0xff), UInt8(length >> 8 & 0xff), UInt8(length >> 16 & 0xff), UInt8(length >> 24)]
        disk += records
        // The status block sits after the records: at 4096, or at the next 4 KiB past a large config.
        let statusAt = statusOffset(recordsLength: records.count)
        disk += [UInt8](repeating: 0, count: statusAt + 4096 - disk.count)
        return disk
    }

    static func statusOffset(recordsLength: Int) -> Int {
        12 + recordsLength <= statusOffset ? statusOffset : (12 + recordsLength + 4095) / 4096 * 4096
    }

    /// Writes the disk file.
    public static func write(_ spec: RunSpec, to path: String) throws {
        let bytes = try encode(spec)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ImageError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw ImageError("cannot write \(path): \(String(cString: strerror(errno)))") }
    }

    /// The exit status the init wrote, or nil when it never got there.
    public static func status(at path: String) -> Int32? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var header = [UInt8](repeating: 0, count: 12)
        guard pread(fd, &header, 12, 0) == 12 else { return nil }
        let length = Int(header[8]) | Int(header[9]) << 8 | Int(header[10]) << 16 | Int(header[11]) << 24
        var block = [UInt8](repeating: 0, count: 32)
        guard pread(fd, &block, 32, off_t(statusOffset(recordsLength: length))) == 32,
              block.starts(with: Array("VIREOST1".utf8)) else { return nil }
        return Int32(String(decoding: block[8...].prefix { $0 != 0 }, as: UTF8.self))
    }
}
