#if canImport(Glibc)
import Glibc
#endif

/// A failed backend operation: what was attempted and the errno behind it.
public struct BlockBackendError: Error, Equatable, CustomStringConvertible {
    public let operation: String
    public let errno: Int32

    public init(operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    /// A refusal that is not a failed system call (errno 0): `message` says it all.
    public init(refusal message: String) {
        operation = message
        errno = 0
    }

    public var description: String {
        errno == 0 ? operation : "\(operation) failed: \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// Storage behind a virtio-blk device: byte-addressed, called only from the device's worker thread.
///
/// Offsets and lengths are already checked against `size` by the device.
public protocol BlockBackend: AnyObject, Sendable {
    /// Size in bytes; the device exposes `size / 512` sectors.
    var size: UInt64 { get }
    /// True when writes, discards and write-zeroes must be refused.
    var isReadOnly: Bool { get }
    /// Fills `buffer` from `offset`.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(BlockBackendError)
    /// Stores `buffer` at `offset`.
    func write(from buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(BlockBackendError)
    /// Makes every completed write durable (survives a host crash).
    func flush() throws(BlockBackendError)
    /// Drops the range's storage if possible; its content afterwards is unspecified.
    func discard(at offset: UInt64, length: UInt64) throws(BlockBackendError)
    /// Makes the range read as zeroes; with `mayUnmap` its storage may be released too.
    func writeZeroes(at offset: UInt64, length: UInt64, mayUnmap: Bool) throws(BlockBackendError)
}
