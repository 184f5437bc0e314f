/// Writes ustar archives (long names and xattrs as PAX records): the tests build image layers with
/// it, hostile ones included, so it writes whatever path it is given.
public struct TarWriter {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    /// Appends a member; `data` is the content of a regular file.
    public mutating func add(_ entry: TarEntry, data: [UInt8] = []) {
        var pax: [(String, [UInt8])] = []
        if entry.path.utf8.count > 100 { pax.append(("path", Array(entry.path.utf8))) }
        if entry.linkTarget.utf8.count > 100 { pax.append(("linkpath", Array(entry.linkTarget.utf8))) }
        for (key, value) in entry.xattrs.sorted(by: { $0.key < $1.key }) { pax.append(("SCHILY.xattr." + key, value)) }
        if !pax.isEmpty {
            var records: [UInt8] = []
            for (key, value) in pax {
                let body = Array(" \(key)=".utf8) + value + [UInt8(ascii: "\n")]
                var length = body.count + 1
                while String(length).utf8.count + body.count != length { length += 1 }
                records += Array(String(length).utf8) + body
            }
            append(header(name: "PaxHeader", type: UInt8(ascii: "x"), mode: 0o644, uid: 0, gid: 0, size: records.count,
                          mtime: 0, link: "", major: 0, minor: 0))
            append(records)
        }
        let type: UInt8
        switch entry.kind {
        case .file: type = UInt8(ascii: "0")
        case .hardLink: type = UInt8(ascii: "1")
        case .symlink: type = UInt8(ascii: "2")
        case .characterDevice: type = UInt8(ascii: "3")
        case .blockDevice: type = UInt8(ascii: "4")
        case .directory: type = UInt8(ascii: "5")
        case .fifo: type = UInt8(ascii: "6")
        }
        append(header(name: String(decoding: entry.path.utf8.prefix(100), as: UTF8.self), type: type, mode: entry.mode,
                      uid: entry.uid, gid: entry.gid, size: entry.kind == .file ? data.count : 0, mtime: entry.modificationTime,
                      link: String(decoding: entry.linkTarget.utf8.prefix(100), as: UTF8.self),
                      major: entry.deviceMajor, minor: entry.deviceMinor))
        if entry.kind == .file { append(data) }
    }

    /// The end-of-archive marker (two zero blocks).
    public mutating func finish() { bytes += [UInt8](repeating: 0, count: 1024) }

    private mutating func append(_ data: [UInt8]) {
        bytes += data
        bytes += [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
    }

    private func header(name: String, type: UInt8, mode: UInt32, uid: UInt32, gid: UInt32, size: Int, mtime: Int64,
                        link: String, major: UInt32, minor: UInt32) -> [UInt8] {
        var block = [UInt8](repeating: 0, count: 512)
        func put(_ offset: Int, _ text: [UInt8]) { for (i, byte) in text.enumerated() { block[offset + i] = byte } }
        func octal(_ offset: Int, _ width: Int, _ value: Int64) {
            let digits = String(value, radix: 8)
            put(offset, Array((String(repeating: "0", count: max(0, width - 1 - digits.count)) + digits).utf8))
        }
        put(0, Array(name.utf8))
        octal(100, 8, Int64(mode))
        octal(108, 8, Int64(uid))
        octal(116, 8, Int64(gid))
        octal(124, 12, Int64(size))
        octal(136, 12, mtime)
        block[156] = type
        put(157, Array(link.utf8))
        put(257, Array("ustar\u{0}00".utf8))
        octal(329, 8, Int64(major))
        octal(337, 8, Int64(minor))
        put(148, Array("        ".utf8))
        let sum = block.reduce(0) { $0 + Int($1) }
        let digits = String(sum, radix: 8)
        put(148, Array((String(repeating: "0", count: 6 - digits.count) + digits).utf8) + [0, 32])
        return block
    }
}
