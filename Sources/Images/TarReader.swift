#if canImport(Glibc)
import Glibc
#endif

/// Streams the members of a tar archive (ustar, GNU long names, PAX): call `next()`, then read the
/// member's data with `readData` (or leave it: `next()` skips what was not read).
public final class TarReader {
    private let input: ByteReader
    private var pendingData: Int64 = 0
    private var pendingPadding: Int64 = 0
    /// Limit on PAX and GNU long-name records (they are read into memory).
    static let maxMetadata: Int64 = 1 << 20
    /// The largest member (1 TiB): far beyond any real layer, far below where size arithmetic overflows.
    static let maxMemberSize: Int64 = 1 << 40

    public init(fd: Int32, hashing: Bool = false) {
        input = ByteReader(fd: fd)
        if hashing { input.hasher = DigestStream() }
    }

    /// The digest of every byte read, once `next()` returned nil (the archive was read to its end).
    public var digest: Digest? { input.hasher?.finish() }

    /// The next member, or nil at the end of the archive.
    public func next() throws -> TarEntry? {
        try skipPending()
        var longName: String?
        var longLink: String?
        var pax: [String: [UInt8]] = [:]
        var metadataBytes: Int64 = 0  // of this member: each record is bounded, their number too
        while true {
            guard let header = try input.read(exactly: 512) else {
                throw ImageError("the archive ends in the middle (no end-of-archive marker)")
            }
            if header.allSatisfy({ $0 == 0 }) { try input.drain(); return nil }
            try verifyChecksum(header)
            let type = header[156]
            let size = try number(header, 124, 12, "size")
            guard size >= 0, size <= TarReader.maxMemberSize else { throw ImageError("tar member size \(size) is out of range") }
            switch type {
            case UInt8(ascii: "L"), UInt8(ascii: "K"), UInt8(ascii: "x"), UInt8(ascii: "g"):
                metadataBytes += size
                guard size <= TarReader.maxMetadata, metadataBytes <= 4 * TarReader.maxMetadata else {
                    throw ImageError("tar metadata records of \(metadataBytes) bytes for one member are too large")
                }
                guard let data = try input.read(exactly: Int(size)) else { throw ImageError("the archive ends in a metadata record") }
                _ = try input.read(exactly: Int(padding(size)))
                if type == UInt8(ascii: "L") { longName = cString(data[...]) }
                else if type == UInt8(ascii: "K") { longLink = cString(data[...]) }
                else if type == UInt8(ascii: "x") { pax.merge(try parsePAX(data)) { $1 } }
                continue  // global PAX headers ('g') carry nothing Vireo applies
            default:
                break
            }
            var entry = try parseHeader(header, size: size)
            if let longName { entry.path = longName }
            if let longLink { entry.linkTarget = longLink }
            try applyPAX(pax, to: &entry)
            // Data follows the header for every type whose size field says so (links and dirs: normally 0).
            pendingData = pax["size"].flatMap { Int64(String(decoding: $0, as: UTF8.self)) } ?? size
            pendingPadding = padding(pendingData)
            return entry
        }
    }

    /// Streams the current member's data to `sink` (at most once per member).
    public func readData(_ sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let count = pendingData
        pendingData = 0
        guard try input.stream(count, sink) else { throw ImageError("the archive ends in the middle of a file") }
    }

    private func skipPending() throws {
        let count = pendingData + pendingPadding
        pendingData = 0
        pendingPadding = 0
        guard try input.stream(count, { _ in }) else { throw ImageError("the archive ends in the middle of a file") }
    }

    private func padding(_ size: Int64) -> Int64 { (512 - size % 512) % 512 }

    private func verifyChecksum(_ header: [UInt8]) throws {
        let stored = try number(header, 148, 8, "checksum")
        var sum: Int64 = 0
        for (index, byte) in header.enumerated() { sum += (148..<156).contains(index) ? 32 : Int64(byte) }
        guard sum == stored else { throw ImageError("tar header checksum mismatch (not a tar archive, or corrupt)") }
    }

    private func parseHeader(_ header: [UInt8], size: Int64) throws -> TarEntry {
        var name = cString(header[0..<100])
        let isUstar = header[257..<262].elementsEqual("ustar".utf8)
        if isUstar {
            let prefix = cString(header[345..<500])
            if !prefix.isEmpty { name = prefix + "/" + name }
        }
        let kind: TarEntry.Kind
        switch header[156] {
        case 0, UInt8(ascii: "0"), UInt8(ascii: "7"): kind = name.hasSuffix("/") ? .directory : .file
        case UInt8(ascii: "1"): kind = .hardLink
        case UInt8(ascii: "2"): kind = .symlink
        case UInt8(ascii: "3"): kind = .characterDevice
        case UInt8(ascii: "4"): kind = .blockDevice
        case UInt8(ascii: "5"): kind = .directory
        case UInt8(ascii: "6"): kind = .fifo
        default:
            throw ImageError("tar member '\(name)' has unsupported type '\(String(decoding: [header[156]], as: UTF8.self))'")
        }
        return TarEntry(
            path: name, kind: kind,
            mode: UInt32(truncatingIfNeeded: try number(header, 100, 8, "mode")) & 0o7777,
            uid: UInt32(truncatingIfNeeded: try number(header, 108, 8, "uid")),
            gid: UInt32(truncatingIfNeeded: try number(header, 116, 8, "gid")),
            size: kind == .file ? size : 0,
            modificationTime: try number(header, 136, 12, "mtime"),
            linkTarget: cString(header[157..<257]),
            deviceMajor: isUstar ? UInt32(truncatingIfNeeded: try number(header, 329, 8, "devmajor")) : 0,
            deviceMinor: isUstar ? UInt32(truncatingIfNeeded: try number(header, 337, 8, "devminor")) : 0)
    }

    private func applyPAX(_ pax: [String: [UInt8]], to entry: inout TarEntry) throws {
        for (key, value) in pax {
            let text = String(decoding: value, as: UTF8.self)
            switch key {
            case "path": entry.path = text
            case "linkpath": entry.linkTarget = text
            case "size":
                guard let size = Int64(text), size >= 0, size <= TarReader.maxMemberSize else { throw ImageError("PAX size '\(text.prefix(32))' is not a size") }
                if entry.kind == .file { entry.size = size }
            case "uid": entry.uid = UInt32(text) ?? entry.uid
            case "gid": entry.gid = UInt32(text) ?? entry.gid
            case "mtime": entry.modificationTime = Int64(text.split(separator: ".").first ?? "") ?? entry.modificationTime
            default:
                if key.hasPrefix("SCHILY.xattr.") { entry.xattrs[String(key.dropFirst(13))] = value }
            }
        }
    }

    /// PAX records: "LENGTH KEY=VALUE\n", LENGTH counting the whole record.
    private func parsePAX(_ data: [UInt8]) throws -> [String: [UInt8]] {
        var result: [String: [UInt8]] = [:]
        var at = 0
        while at < data.count {
            guard let space = data[at...].firstIndex(of: UInt8(ascii: " ")),
                  let length = Int(String(decoding: data[at..<space], as: UTF8.self)), length > 0,
                  length <= data.count - at, data[at + length - 1] == UInt8(ascii: "\n"),
                  let equals = data[(space + 1)..<(at + length)].firstIndex(of: UInt8(ascii: "=")) else {
                throw ImageError("malformed PAX header record")
            }
            let key = String(decoding: data[(space + 1)..<equals], as: UTF8.self)
            result[key] = Array(data[(equals + 1)..<(at + length - 1)])
            at += length
        }
        return result
    }

    /// An octal field, or GNU base-256 (high bit set) for large values.
    private func number(_ header: [UInt8], _ offset: Int, _ length: Int, _ what: String) throws -> Int64 {
        let field = header[offset..<offset + length]
        if let first = field.first, first & 0x80 != 0 {
            // At most the last 7 bytes may be non-zero (56 bits): no shift can overflow.
            let body = field.dropFirst()
            let significant = body.suffix(7)
            guard first == 0x80, body.dropLast(significant.count).allSatisfy({ $0 == 0 }) else {
                throw ImageError("tar \(what) field out of range")
            }
            return significant.reduce(Int64(0)) { ($0 << 8) | Int64($1) }
        }
        var value: Int64 = 0
        var seenDigit = false
        for byte in field {
            if byte == 0 || (byte == 32 && seenDigit) { break }
            if byte == 32 { continue }
            guard byte >= 48 && byte <= 55 else { throw ImageError("tar \(what) field is not octal") }
            seenDigit = true
            guard value < (Int64.max >> 3) else { throw ImageError("tar \(what) field out of range") }
            value = value << 3 | Int64(byte - 48)
        }
        return value
    }

    private func cString(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }
}
