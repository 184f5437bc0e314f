/// Bounds-checked little-endian reads over an untrusted image.
///
/// Callers check ranges with `has(_:_:)` before reading; the reads themselves still trap
/// rather than read out of bounds if a check was missed.
struct BootBytes {
    let raw: UnsafeRawBufferPointer

    init(_ raw: UnsafeRawBufferPointer) { self.raw = raw }

    var count: Int { raw.count }

    /// True when `[offset, offset+length)` lies inside the image (overflow-safe).
    func has(_ offset: UInt64, _ length: UInt64) -> Bool {
        offset <= UInt64(count) && length <= UInt64(count) - offset
    }

    func u8(_ offset: Int) -> UInt8 {
        // Buffer subscripts are only checked in debug builds; keep the check in release too.
        precondition(offset >= 0 && offset < count, "unchecked image read")
        return raw[offset]
    }

    func load<T: FixedWidthInteger>(_: T.Type, _ offset: Int) -> T {
        precondition(offset >= 0 && offset <= count - MemoryLayout<T>.size, "unchecked image read")
        return T(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    func u16(_ offset: Int) -> UInt16 { load(UInt16.self, offset) }
    func u32(_ offset: Int) -> UInt32 { load(UInt32.self, offset) }
    func u64(_ offset: Int) -> UInt64 { load(UInt64.self, offset) }

    /// Up to `count` bytes from the start, for error messages.
    func prefix(_ n: Int) -> [UInt8] { Array(raw.prefix(n)) }

    /// A sub-view; the range must have been checked.
    func slice(_ offset: Int, _ length: Int) -> UnsafeRawBufferPointer {
        precondition(offset >= 0 && length >= 0 && offset <= count - length, "unchecked image slice")
        return UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + length)])
    }
}

extension Array where Element == UInt8 {
    /// Stores a little-endian integer at `offset` (the array must be large enough).
    mutating func bootStore<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        Swift.withUnsafeBytes(of: value.littleEndian) { bytes in
            for (i, byte) in bytes.enumerated() { self[offset + i] = byte }
        }
    }

    /// Reads a little-endian integer at `offset` (the array must be large enough).
    func bootLoad<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var value: T = 0
        for i in 0..<MemoryLayout<T>.size { value |= T(self[offset + i]) << (8 * i) }
        return value
    }

    /// Stores ASCII bytes of `text` at `offset`, padded with `pad` to `width`.
    mutating func bootStoreASCII(_ text: String, at offset: Int, width: Int, pad: UInt8 = 0x20) {
        let utf8 = Array(text.utf8.prefix(width))
        for i in 0..<width { self[offset + i] = i < utf8.count ? utf8[i] : pad }
    }
}

/// Runs `body` over an array's bytes, keeping the typed error (Array.withUnsafeBytes is `rethrows`).
func withBootBytes<R, E: Error>(_ array: [UInt8], _ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
    try array.withUnsafeBytes { raw in Result { () throws(E) -> R in try body(raw) } }.get()
}

/// Formats a number as 0x-prefixed hex.
func hex<T: BinaryInteger>(_ value: T) -> String { "0x" + String(value, radix: 16) }

/// Rounds up to a power-of-two alignment; nil on overflow.
func alignUp(_ value: UInt64, _ alignment: UInt64) -> UInt64? {
    let (sum, overflow) = value.addingReportingOverflow(alignment - 1)
    return overflow ? nil : sum & ~(alignment - 1)
}

/// Rounds down to a power-of-two alignment.
func alignDown(_ value: UInt64, _ alignment: UInt64) -> UInt64 { value & ~(alignment - 1) }

/// True when two half-open ranges share a byte.
func overlaps(_ a: Range<UInt64>, _ b: Range<UInt64>) -> Bool {
    !a.isEmpty && !b.isEmpty && a.lowerBound < b.upperBound && b.lowerBound < a.upperBound
}

/// Bounds-checked little-endian reads over an untrusted image, however it is held: `BootBytes`
/// over memory, `PagedImage` over a file read on demand.
protocol ImageReading {
    var count: Int { get }
    func u8(_ offset: Int) -> UInt8
    func u16(_ offset: Int) -> UInt16
    func u32(_ offset: Int) -> UInt32
    func u64(_ offset: Int) -> UInt64
}

extension ImageReading {
    /// True when `[offset, offset+length)` lies inside the image (overflow-safe).
    func has(_ offset: UInt64, _ length: UInt64) -> Bool {
        offset <= UInt64(count) && length <= UInt64(count) - offset
    }

    /// Up to `n` bytes from the start, for error messages.
    func prefix(_ n: Int) -> [UInt8] { (0..<min(n, count)).map { u8($0) } }

    /// The bytes of a checked range.
    func bytes(_ offset: Int, _ length: Int) -> [UInt8] {
        precondition(offset >= 0 && length >= 0 && offset <= count - length, "unchecked image slice")
        return (offset..<(offset + length)).map { u8($0) }
    }

    func u16(_ offset: Int) -> UInt16 { littleEndian(offset) }
    func u32(_ offset: Int) -> UInt32 { littleEndian(offset) }
    func u64(_ offset: Int) -> UInt64 { littleEndian(offset) }

    private func littleEndian<T: FixedWidthInteger>(_ offset: Int) -> T {
        precondition(offset >= 0 && offset <= count - MemoryLayout<T>.size, "unchecked image read")
        var value: T = 0
        for i in 0..<MemoryLayout<T>.size { value |= T(u8(offset + i)) << (8 * i) }
        return value
    }
}

extension BootBytes: ImageReading {}
