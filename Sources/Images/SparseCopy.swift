#if canImport(Glibc)
import Glibc
#endif

/// Copies a sparse file's data extents (found with `SEEK_DATA`/`SEEK_HOLE`) into a new file of the same size,
/// so holes stay holes: an overlay is the size of its base but holds only the blocks the guest wrote.
public enum SparseCopy {
    /// lseek(2)'s SEEK_DATA and SEEK_HOLE (Linux values; Glibc's module map leaves them out).
    static let seekData: Int32 = 3
    static let seekHole: Int32 = 4

    /// Copies `source` to `target` (created with O_EXCL, mode 0600, never through a link) and fsyncs it.
    public static func copy(_ source: String, to target: String) throws(ImageError) {
        let input = open(source, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard input >= 0 else { throw ImageError("cannot open \(source): \(String(cString: strerror(errno)))") }
        defer { close(input) }
        var info = stat()
        guard fstat(input, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { throw ImageError("\(source) is not a regular file") }
        let output = open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw ImageError("cannot create \(target): \(String(cString: strerror(errno)))") }
        defer { close(output) }
        guard ftruncate(output, info.st_size) == 0 else { throw ImageError("cannot size \(target): \(String(cString: strerror(errno)))") }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        var offset: off_t = 0
        while offset < info.st_size {
            let data = lseek(input, offset, SparseCopy.seekData)
            if data < 0 && errno == ENXIO { break }  // only a hole is left
            guard data >= 0 else { throw ImageError("cannot read \(source): \(String(cString: strerror(errno)))") }
            let hole = lseek(input, data, SparseCopy.seekHole)
            guard hole > data else { throw ImageError("cannot read \(source): \(String(cString: strerror(errno)))") }
            var at = data
            while at < hole {
                let count = pread(input, buffer.baseAddress, min(buffer.count, Int(hole - at)), at)
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { throw ImageError("cannot read \(source): \(count < 0 ? String(cString: strerror(errno)) : "short read")") }
                guard pwrite(output, buffer.baseAddress, count, at) == count else {
                    throw ImageError("cannot write \(target): \(String(cString: strerror(errno)))")
                }
                at += off_t(count)
            }
            offset = hole
        }
        guard fsync(output) == 0 else { throw ImageError("cannot sync \(target): \(String(cString: strerror(errno)))") }
    }
}
