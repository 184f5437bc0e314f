#if canImport(Glibc)
import Glibc
#endif

/// Buffered reads from a file descriptor (a file, or the pipe from a decompressor).
final class ByteReader {
    private let fd: Int32
    private var buffer: [UInt8]
    private var start = 0
    private var end = 0
    /// Bytes consumed so far.
    private(set) var offset: Int64 = 0
    /// When set, hashes every byte read (a layer's uncompressed digest, its `diff_id`).
    var hasher: DigestStream?

    init(fd: Int32, bufferSize: Int = 1 << 16) {
        self.fd = fd
        buffer = [UInt8](repeating: 0, count: bufferSize)
    }

    /// Fills the buffer; false at end of input.
    private func fill() throws -> Bool {
        start = 0
        end = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw ImageError("read failed: \(String(cString: strerror(errno)))") }
            end = n
            if n > 0, hasher != nil { buffer.withUnsafeBytes { hasher!.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) } }
            return n > 0
        }
    }

    /// Exactly `count` bytes; nil when the input ends first (a truncated archive).
    func read(exactly count: Int) throws -> [UInt8]? {
        var out = [UInt8]()
        out.reserveCapacity(count)
        while out.count < count {
            if start == end, try !fill() { return nil }
            let take = min(count - out.count, end - start)
            out.append(contentsOf: buffer[start..<start + take])
            start += take
            offset += Int64(take)
        }
        return out
    }

    /// Passes the next `count` bytes to `sink` in chunks; false when the input ends first.
    func stream(_ count: Int64, _ sink: (UnsafeRawBufferPointer) throws -> Void) throws -> Bool {
        var left = count
        while left > 0 {
            if start == end, try !fill() { return false }
            let take = Int(min(left, Int64(end - start)))
            try buffer.withUnsafeBytes { try sink(UnsafeRawBufferPointer(rebasing: $0[start..<start + take])) }
            start += take
            offset += Int64(take)
            left -= Int64(take)
        }
        return true
    }

    /// Reads to the end (so a decompressor writing into a pipe is never left blocked).
    func drain() throws {
        while try fill() { offset += Int64(end - start); start = end }
    }
}
