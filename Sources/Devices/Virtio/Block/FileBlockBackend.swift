internal import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// A raw disk image (or host block device) accessed with pread/pwrite, fsync and fallocate; locked
/// (OFD lock) for writing, or shared for reading when read-only, while open.
public final class FileBlockBackend: BlockBackend, Sendable {
    public let path: String
    public let size: UInt64
    public let isReadOnly: Bool
    private let fd: Int32

    /// Opens `path` read-write, or read-only when `readOnly`.
    public convenience init(path: String, readOnly: Bool = false) throws(BlockBackendError) {
        let fd: Int32
        switch CheckedOpen.open(path, flags: readOnly ? O_RDONLY : O_RDWR, kinds: .regularOrBlockDevice, image: true) {
        case let .success(opened): fd = opened
        case let .failure(.system(error)): throw BlockBackendError(operation: "open \(path)", errno: error)
        case let .failure(refusal): throw BlockBackendError(refusal: "disk \(path) \(refusal)")
        }
        try self.init(descriptor: fd, name: path, readOnly: readOnly)
    }

    /// Takes over `fd` (an open regular file or block device, e.g. one passed over a socket to a
    /// jailed VMM that cannot open paths): locks it as `init(path:)` does; `name` is for messages.
    /// The descriptor is closed on failure too.
    public init(descriptor fd: Int32, name path: String, readOnly: Bool) throws(BlockBackendError) {
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG || info.st_mode & S_IFMT == S_IFBLK else {
            close(fd)
            throw BlockBackendError(refusal: "disk \(path) is not a regular file or block device")
        }
        let mode = fcntl(fd, F_GETFL) & O_ACCMODE
        guard mode == O_RDWR || (readOnly && mode == O_RDONLY) else {
            close(fd)
            throw BlockBackendError(refusal: "disk \(path) was not opened \(readOnly ? "for reading" : "for reading and writing")")
        }
        // One writer per image, and no writer beside readers (issue 12, finding 6): a lock on the
        // open file description, held as long as the VMM keeps the image open.
        let locked = clinux_ofd_lock(fd, readOnly ? 0 : 1)
        guard locked == 0 else {
            close(fd)
            if locked == -EAGAIN || locked == -EACCES {
                throw BlockBackendError(refusal: readOnly
                    ? "disk \(path) is open for writing by another VM (or process holding a lock on it)"
                    : "disk \(path) is in use by another VM (or process holding a lock on it); refusing a second writer")
            }
            throw BlockBackendError(operation: "lock \(path)", errno: -locked)
        }
        // lseek, not fstat: a block device's st_size is 0.
        let end = lseek(fd, 0, SEEK_END)
        guard end >= 0 else {
            let error = errno
            close(fd)
            throw BlockBackendError(operation: "lseek \(path)", errno: error)
        }
        self.path = path
        self.fd = fd
        size = UInt64(end)
        isReadOnly = readOnly
    }

    deinit { close(fd) }

    /// Vectors per preadv/pwritev call (Linux's IOV_MAX).
    static let maxVectors = 1024

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(BlockBackendError) {
        guard let base = buffer.baseAddress else { return }
        var done = 0
        while done < buffer.count {
            let result = pread(fd, base + done, buffer.count - done, off_t(offset) + off_t(done))
            if result < 0 {
                if errno == EINTR { continue }
                throw BlockBackendError(operation: "pread \(path)", errno: errno)
            }
            if result == 0 {
                // The image shrank under us: what is past its end reads as zeroes.
                memset(base + done, 0, buffer.count - done)
                return
            }
            done += result
        }
    }

    public func write(from buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(BlockBackendError) {
        guard !isReadOnly else { throw BlockBackendError(operation: "write to read-only \(path)", errno: EROFS) }
        guard let base = buffer.baseAddress else { return }
        var done = 0
        while done < buffer.count {
            let result = pwrite(fd, base + done, buffer.count - done, off_t(offset) + off_t(done))
            if result < 0 {
                if errno == EINTR { continue }
                throw BlockBackendError(operation: "pwrite \(path)", errno: errno)
            }
            done += result
        }
    }

    public func readVectors(_ vectors: UnsafeMutableBufferPointer<iovec>, at offset: UInt64) throws(BlockBackendError) {
        // One piece: plain pread (preadv costs an iovec copy-in for nothing).
        if vectors.count == 1 {
            return try read(into: UnsafeMutableRawBufferPointer(start: vectors[0].iov_base, count: vectors[0].iov_len), at: offset)
        }
        var first = 0, position = off_t(offset)
        while first < vectors.count {
            let result = preadv(fd, vectors.baseAddress! + first, Int32(min(vectors.count - first, FileBlockBackend.maxVectors)), position)
            if result < 0 {
                if errno == EINTR { continue }
                throw BlockBackendError(operation: "preadv \(path)", errno: errno)
            }
            if result == 0 {
                // The image shrank under us: what is past its end reads as zeroes.
                for vector in vectors[first...] where vector.iov_len > 0 { memset(vector.iov_base, 0, vector.iov_len) }
                return
            }
            position += off_t(result)
            first = advance(vectors, from: first, by: result)
        }
    }

    public func writeVectors(_ vectors: UnsafeMutableBufferPointer<iovec>, at offset: UInt64) throws(BlockBackendError) {
        guard !isReadOnly else { throw BlockBackendError(operation: "write to read-only \(path)", errno: EROFS) }
        if vectors.count == 1 {
            return try write(from: UnsafeRawBufferPointer(start: vectors[0].iov_base, count: vectors[0].iov_len), at: offset)
        }
        var first = 0, position = off_t(offset)
        while first < vectors.count {
            let result = pwritev(fd, vectors.baseAddress! + first, Int32(min(vectors.count - first, FileBlockBackend.maxVectors)), position)
            if result < 0 {
                if errno == EINTR { continue }
                throw BlockBackendError(operation: "pwritev \(path)", errno: errno)
            }
            // Pieces are never empty, so nothing written means the device took nothing: no endless retry.
            guard result > 0 else { throw BlockBackendError(operation: "pwritev \(path)", errno: EIO) }
            position += off_t(result)
            first = advance(vectors, from: first, by: result)
        }
    }

    public func flush() throws(BlockBackendError) {
        guard fsync(fd) == 0 else { throw BlockBackendError(operation: "fsync \(path)", errno: errno) }
    }

    public func discard(at offset: UInt64, length: UInt64) throws(BlockBackendError) {
        guard !isReadOnly else { throw BlockBackendError(operation: "discard on read-only \(path)", errno: EROFS) }
        let result = punchHole(at: offset, length: length)
        // Discard is a hint: a filesystem that cannot punch holes just keeps the blocks.
        guard result == 0 || result == -EOPNOTSUPP else {
            throw BlockBackendError(operation: "fallocate(PUNCH_HOLE) \(path)", errno: -result)
        }
    }

    public func writeZeroes(at offset: UInt64, length: UInt64, mayUnmap: Bool) throws(BlockBackendError) {
        guard !isReadOnly else { throw BlockBackendError(operation: "write-zeroes on read-only \(path)", errno: EROFS) }
        if !mayUnmap {
            let result = clinux_fallocate(fd, Int32(CLINUX_FALLOC_ZERO_RANGE | CLINUX_FALLOC_KEEP_SIZE),
                                          Int64(offset), Int64(length))
            if result == 0 { return }
        }
        // A punched hole reads as zeroes too; tmpfs and others lack ZERO_RANGE but have this.
        if punchHole(at: offset, length: length) == 0 { return }
        try writeZeroBlocks(at: offset, length: length)
    }

    private func punchHole(at offset: UInt64, length: UInt64) -> Int32 {
        clinux_fallocate(fd, Int32(CLINUX_FALLOC_PUNCH_HOLE | CLINUX_FALLOC_KEEP_SIZE),
                         Int64(offset), Int64(length))
    }

    /// The last resort for write-zeroes: plain writes of a zero buffer.
    private func writeZeroBlocks(at offset: UInt64, length: UInt64) throws(BlockBackendError) {
        let chunk = 64 * 1024
        let zeroes = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { zeroes.deallocate() }
        zeroes.initializeMemory(as: UInt8.self, repeating: 0)
        var done: UInt64 = 0
        while done < length {
            let take = Int(min(UInt64(chunk), length - done))
            try write(from: UnsafeRawBufferPointer(rebasing: zeroes[0..<take]), at: offset + done)
            done += UInt64(take)
        }
    }
}
