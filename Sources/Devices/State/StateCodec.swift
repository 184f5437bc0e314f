/// A snapshot record that could not be decoded.
public enum StateError: Error, Equatable, CustomStringConvertible {
    case truncated(what: String)
    case invalid(what: String)

    public var description: String {
        switch self {
        case let .truncated(what): return "snapshot state for \(what) is truncated"
        case let .invalid(what): return "snapshot state for \(what) is invalid"
        }
    }
}

/// Appends little-endian fields to a byte buffer (device and VM snapshot state).
public struct StateWriter {
    public private(set) var bytes: [UInt8] = []
    public init() {}

    public mutating func u8(_ value: UInt8) { bytes.append(value) }
    public mutating func bool(_ value: Bool) { bytes.append(value ? 1 : 0) }
    public mutating func u16(_ value: UInt16) { integer(value) }
    public mutating func u32(_ value: UInt32) { integer(value) }
    public mutating func u64(_ value: UInt64) { integer(value) }
    public mutating func i64(_ value: Int64) { integer(value) }

    /// A length-prefixed byte string.
    public mutating func blob(_ value: [UInt8]) {
        u32(UInt32(value.count))
        bytes += value
    }

    public mutating func string(_ value: String) { blob(Array(value.utf8)) }

    private mutating func integer<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }
}

/// Reads fields written by StateWriter; every read is bounds-checked (snapshots are untrusted input).
public struct StateReader {
    private let bytes: [UInt8]
    private var offset = 0
    private let what: String

    public init(_ bytes: [UInt8], what: String) { self.bytes = bytes; self.what = what }

    public var isAtEnd: Bool { offset == bytes.count }

    public mutating func u8() throws(StateError) -> UInt8 { try integer() }
    public mutating func bool() throws(StateError) -> Bool {
        let value: UInt8 = try integer()
        guard value <= 1 else { throw .invalid(what: what) }
        return value == 1
    }
    public mutating func u16() throws(StateError) -> UInt16 { try integer() }
    public mutating func u32() throws(StateError) -> UInt32 { try integer() }
    public mutating func u64() throws(StateError) -> UInt64 { try integer() }
    public mutating func i64() throws(StateError) -> Int64 { try integer() }

    public mutating func blob(maximum: Int = 1 << 30) throws(StateError) -> [UInt8] {
        let count = Int(try u32())
        guard count <= maximum else { throw .invalid(what: what) }
        guard count <= bytes.count - offset else { throw .truncated(what: what) }
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }

    public mutating func string(maximum: Int = 1 << 20) throws(StateError) -> String {
        String(decoding: try blob(maximum: maximum), as: UTF8.self)
    }

    /// Throws unless every byte was consumed (a longer record is from another format).
    public func finish() throws(StateError) {
        guard isAtEnd else { throw .invalid(what: what) }
    }

    private mutating func integer<T: FixedWidthInteger>() throws(StateError) -> T {
        let size = MemoryLayout<T>.size
        guard size <= bytes.count - offset else { throw .truncated(what: what) }
        var value: T = 0
        for index in 0..<size { value |= T(bytes[offset + index]) << (8 * index) }
        offset += size
        return value
    }
}
