#if canImport(Glibc)
import Glibc
#endif

/// Bounds a running VMM's `vmm.log` (issue 12, finding 5): past the limit its last `limit` bytes
/// move to `vmm.log.1`, the one older generation, and the log is emptied. The VMM writes it with
/// O_APPEND, so it carries on at the new end; a line written between the copy and the truncation
/// is lost, which a log that only grows past its bound can afford.
enum VMMLog {
    static func rotateIfNeeded(_ paths: VMPaths, limit: Int) {
        var info = stat()
        // lstat first: the monitor asks for every running VM ten times a second.
        guard lstat(paths.vmmLog, &info) == 0, Int(info.st_size) > limit else { return }
        let fd = open(paths.vmmLog, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_nlink == 1 else { return }
        // A fresh file: never truncate or write through whatever might stand at that name.
        unlink(paths.rotatedVMMLog)
        let rotated = open(paths.rotatedVMMLog, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o640)
        guard rotated >= 0 else { return }
        defer { close(rotated) }
        var offset = off_t(max(0, Int(info.st_size) - limit))
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let count = pread(fd, &buffer, buffer.count, offset)
            guard count > 0 else { break }
            var written = 0
            while written < count {
                let result = buffer.withUnsafeBytes { write(rotated, $0.baseAddress! + written, count - written) }
                guard result > 0 else { break }
                written += result
            }
            offset += off_t(count)
        }
        ftruncate(fd, 0)
    }
}
