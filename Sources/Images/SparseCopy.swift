#if canImport(Glibc)
import Glibc
#endif

/// Copies a sparse file's data extents (`SEEK_DATA`/`SEEK_HOLE`) into a new file of the same size,
/// so holes stay holes: an overlay is the size of its base but holds only the blocks the guest wrote.
public enum SparseCopy {
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
        var offset: off_t = 0
        while offset < info.st_size {
            let data = lseek(input, offset, SEEK_DATA)
            if data < 0 && errno == ENXIO { break }  // only a hole is left
            guard data >= 0 else { throw ImageError("cannot read \(source): \(String(cString: strerror(errno)))") }
            let hole = lseek(input, data, SEEK_HOLE)
            guard hole > data else { throw ImageError("cannot read \(source): \(String(cString: strerror(errno)))") }
            var from: off_t = data, to: off_t = data
            while from < hole {
                let copied = copy_file_range(input, &from, output, &to, Int(hole - from), 0)
                if copied < 0 && errno == EINTR { continue }
                guard copied > 0 else { throw ImageError("cannot copy \(source) to \(target): \(copied < 0 ? String(cString: strerror(errno)) : "short copy")") }
            }
            offset = hole
        }
        guard fsync(output) == 0 else { throw ImageError("cannot sync \(target): \(String(cString: strerror(errno)))") }
    }
}
