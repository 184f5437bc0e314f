#if canImport(Glibc)
import Glibc
#endif

/// Opens files in a directory another user can write (a VM's `vmm/` directory) without ever
/// following a link, blocking on a FIFO, or reading more than asked: the daemon is root and the
/// directory's owner may be a hostile guest that escaped into its VMM (issue 12, finding 1).
enum DirectoryFiles {
    /// A read-only descriptor of `name` in `directory`, only if it is a regular file with one link.
    static func openRegular(_ directory: String, _ name: String) -> (fd: Int32, size: Int64, inode: UInt64)? {
        let dirFD = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard dirFD >= 0 else { return nil }
        defer { close(dirFD) }
        let fd = openat(dirFD, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var info = stat()
        // One link: a hard link to some other file (a root-only one) is never read for the user.
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_nlink == 1 else {
            close(fd)
            return nil
        }
        return (fd, Int64(info.st_size), UInt64(info.st_ino))
    }

    /// Size and inode of a regular file, without following a link.
    static func identity(_ directory: String, _ name: String) -> (inode: UInt64, size: Int64)? {
        guard let file = openRegular(directory, name) else { return nil }
        close(file.fd)
        return (file.inode, file.size)
    }

    /// Up to `limit` bytes of `name` from `offset`.
    static func read(_ directory: String, _ name: String, from offset: Int64, limit: Int) -> [UInt8]? {
        guard let file = openRegular(directory, name) else { return nil }
        defer { close(file.fd) }
        let want = max(0, min(Int64(limit), file.size - offset))
        var result = [UInt8](repeating: 0, count: Int(want))
        var done = 0
        while done < result.count {
            let count = result.withUnsafeMutableBytes { pread(file.fd, $0.baseAddress! + done, $0.count - done, off_t(offset) + off_t(done)) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            done += count
        }
        return Array(result[0..<done])
    }
}
