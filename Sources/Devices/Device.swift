/// A device model reachable through port I/O or MMIO.
///
/// `offset` is relative to the base the device was registered at; `data.count` is the access size
/// (1, 2, 4 or 8). Implementations must accept any offset and size inside their range without
/// trapping: the guest chooses both.
public protocol BusDevice: AnyObject, Sendable {
    func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer)
    func write(offset: UInt64, from data: UnsafeRawBufferPointer)
}

/// An interrupt line a device drives; the VMM wires it to the in-kernel irqchip.
public protocol InterruptLine: AnyObject, Sendable {
    /// Sets a level-triggered line high or low.
    func setLevel(_ high: Bool)
}

/// Where a console device sends what the guest writes.
public protocol ConsoleSink: AnyObject, Sendable {
    func consoleOutput(_ bytes: UnsafeRawBufferPointer)
}

extension UnsafeRawBufferPointer {
    /// The little-endian value of a 1-, 2-, 4- or 8-byte access.
    @inline(__always)
    public func loadAccessValue() -> UInt64 {
        var value: UInt64 = 0
        for index in 0..<Swift.min(count, 8) { value |= UInt64(self[index]) << (8 * UInt64(index)) }
        return value
    }
}

extension UnsafeMutableRawBufferPointer {
    /// Stores `value` little-endian into the access buffer, truncated to its size.
    @inline(__always)
    public func storeAccessValue(_ value: UInt64) {
        for index in 0..<count { self[index] = index < 8 ? UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) : 0 }
    }
}
