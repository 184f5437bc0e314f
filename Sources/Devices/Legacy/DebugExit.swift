/// QEMU's isa-debug-exit: a guest write of `v` ends the VM with exit code `(v << 1) | 1`.
///
/// Register it at `DebugExit.defaultPort` (0x501) with length `length` (the configured I/O size).
/// The code is odd by construction so that a guest-requested exit can never be mistaken for 0.
public final class DebugExit: BusDevice {
    /// QEMU's default `iobase`.
    public static let defaultPort: UInt64 = 0x501

    /// Bytes the device decodes (QEMU's `iosize`: 1, 2 or 4).
    public let length: UInt64
    private let onExit: @Sendable (_ code: Int32) -> Void

    /// Creates the device; `onExit` runs on the vCPU thread that wrote the port.
    public init(size: Int = 1, onExit: @escaping @Sendable (_ code: Int32) -> Void) {
        precondition(size == 1 || size == 2 || size == 4, "isa-debug-exit iosize must be 1, 2 or 4")
        self.length = UInt64(size)
        self.onExit = onExit
    }

    /// Reads float high, as on QEMU, where the device is write-only.
    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        data.storeAccessValue(UInt64.max)
    }

    /// Any write, at any offset and width, exits; QEMU ignores both too.
    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        let value = UInt32(truncatingIfNeeded: data.loadAccessValue())
        onExit(Int32(truncatingIfNeeded: value << 1 | 1))
    }
}
