import Memory

/// A piece of a buffer that lies wholly inside one guest RAM region.
public struct GuestSegment: Equatable, Sendable {
    public let address: UInt64
    public let length: Int

    public init(address: UInt64, length: Int) {
        self.address = address
        self.length = length
    }
}

/// One available buffer, validated: every segment is guest RAM, readable ones came before writable ones.
///
/// Zero-length descriptors are dropped; a descriptor that crosses from one RAM region into an
/// adjacent one is split, so each segment maps to one host range.
public struct DescriptorChain: Sendable {
    /// The head index to hand back in `VirtQueue.addUsed`.
    public let head: UInt16
    /// Device-readable segments (driver → device), in order.
    public let readable: [GuestSegment]
    /// Device-writable segments (device → driver), in order.
    public let writable: [GuestSegment]
    public let readableLength: Int
    public let writableLength: Int

    /// The segments covering bytes `[offset, offset+length)` of `segments`, clipped to what exists.
    public static func slice(_ segments: [GuestSegment], from offset: Int, length: Int) -> [GuestSegment] {
        var result: [GuestSegment] = []
        var skip = max(offset, 0), left = max(length, 0)
        for segment in segments where left > 0 {
            if skip >= segment.length { skip -= segment.length; continue }
            let take = min(segment.length - skip, left)
            result.append(GuestSegment(address: segment.address + UInt64(skip), length: take))
            left -= take
            skip = 0
        }
        return result
    }

    /// Copies readable bytes starting at `offset` into `destination`; returns how many were copied.
    public func read(from memory: GuestMemory, offset: Int, into destination: UnsafeMutableRawBufferPointer) throws(VirtioError) -> Int {
        var copied = 0
        for piece in DescriptorChain.slice(readable, from: offset, length: destination.count) {
            do {
                try memory.read(into: UnsafeMutableRawBufferPointer(rebasing: destination[copied..<copied + piece.length]),
                                at: piece.address)
            } catch { throw .memory(error) }
            copied += piece.length
        }
        return copied
    }

    /// Copies `bytes` into the writable part starting at `offset`; returns how many fitted.
    @discardableResult
    public func write(to memory: GuestMemory, offset: Int, from bytes: UnsafeRawBufferPointer) throws(VirtioError) -> Int {
        var copied = 0
        for piece in DescriptorChain.slice(writable, from: offset, length: bytes.count) {
            do {
                try memory.write(UnsafeRawBufferPointer(rebasing: bytes[copied..<copied + piece.length]), at: piece.address)
            } catch { throw .memory(error) }
            copied += piece.length
        }
        return copied
    }
}

extension DescriptorChain {
    /// Up to `count` readable bytes starting at `offset`, copied out.
    public func readBytes(from memory: GuestMemory, offset: Int, count: Int) throws(VirtioError) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        for piece in DescriptorChain.slice(readable, from: offset, length: count) {
            do { bytes += try memory.readBytes(at: piece.address, count: piece.length) } catch { throw .memory(error) }
        }
        return bytes
    }

    /// Copies `bytes` into the writable part starting at `offset`; returns how many fitted.
    @discardableResult
    public func writeBytes(_ bytes: [UInt8], to memory: GuestMemory, offset: Int) throws(VirtioError) -> Int {
        var copied = 0
        for piece in DescriptorChain.slice(writable, from: offset, length: bytes.count) {
            do { try memory.write(Array(bytes[copied..<copied + piece.length]), at: piece.address) } catch { throw .memory(error) }
            copied += piece.length
        }
        return copied
    }
}

extension GuestMemory {
    /// Splits `[address, address+length)` into per-region segments; false when any byte is not RAM.
    func appendSegments(address: UInt64, length: UInt64, to segments: inout [GuestSegment]) -> Bool {
        guard address.addingReportingOverflow(length).overflow == false else { return false }
        var cursor = address, left = length
        while left > 0 {
            guard let region = regions.first(where: { $0.guestBase <= cursor && cursor < $0.guestEnd }) else { return false }
            let take = min(left, region.guestEnd - cursor)
            segments.append(GuestSegment(address: cursor, length: Int(take)))
            cursor += take
            left -= take
        }
        return true
    }

    /// The host view of a validated segment.
    func view(_ segment: GuestSegment) throws(VirtioError) -> UnsafeMutableRawBufferPointer {
        do { return try buffer(at: segment.address, length: segment.length) } catch { throw .memory(error) }
    }
}
