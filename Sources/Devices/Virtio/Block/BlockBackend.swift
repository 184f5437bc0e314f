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
    /// Fills the buffers of `vectors`, in order, from `offset` (one preadv where the backend can).
    /// The backend may change `vectors` (it advances them over short transfers).
    func readVectors(_ vectors: UnsafeMutableBufferPointer<iovec>, at offset: UInt64) throws(BlockBackendError)
    /// Stores the buffers of `vectors`, in order, at `offset` (one pwritev where the backend can).
    /// The backend may change `vectors`.
    func writeVectors(_ vectors: UnsafeMutableBufferPointer<iovec>, at offset: UInt64) throws(BlockBackendError)
}

extension BlockBackend {
    /// One `read(into:at:)` per vector.
    public func readVectors(_ vectors: UnsafeMutableBufferPointer<iovec>, at offset: UInt64) throws(BlockBackendError) {
        var position = offset
        for vector in vectors {
            try read(into: UnsafeMutableRawBufferPointer(start: vector.iov_base, count: vector.iov_len), at: position)
            position += UInt64(vector.iov_len)
        }
    }

    /// One `write(from:at:)` per vector.
    public func writeVectors(_ vectors: UnsafeMutableBufferPointer<iovec>, at offset: UInt64) throws(BlockBackendError) {
        var position = offset
        for vector in vectors {
            try write(from: UnsafeRawBufferPointer(start: vector.iov_base, count: vector.iov_len), at: position)
            position += UInt64(vector.iov_len)
        }
    }
}

/// Steps over `count` bytes transferred from `vectors[first...]`: vectors done are passed over, a
/// partly done one is shortened in place. Returns the index of the first vector with bytes left.
func advance(_ vectors: UnsafeMutableBufferPointer<iovec>, from first: Int, by count: Int) -> Int {
    var index = first, left = count
    while index < vectors.count, left >= vectors[index].iov_len {
        left -= vectors[index].iov_len
        index += 1
    }
    if left > 0, index < vectors.count {
        vectors[index].iov_base = vectors[index].iov_base.map { $0 + left }
        vectors[index].iov_len -= left
    }
    return index
}
