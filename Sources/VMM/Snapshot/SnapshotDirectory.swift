#if canImport(Glibc)
import Glibc
#endif

/// The snapshot target, made safe against a user who can write its parent: the VMM creates the
/// directory itself and works only through its descriptor, creating files with O_EXCL|O_NOFOLLOW,
/// so a planted link or file can never redirect a (root) VMM's writes (issue 12, finding 7).
enum SnapshotDirectory {
    /// Creates `directory` (or accepts an existing empty one of ours, never a link) and opens it.
    static func create(_ directory: String) throws(SnapshotError) -> Int32 {
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw .io("cannot create snapshot directory \(directory): \(String(cString: strerror(errno)))")
        }
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            let reason = errno == ELOOP || errno == ENOTDIR ? "is a symbolic link or not a directory" : String(cString: strerror(errno))
            throw .io("snapshot directory \(directory) \(reason)")
        }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_uid == geteuid() else {
            close(fd)
            throw .io("snapshot directory \(directory) exists and belongs to another user")
        }
        guard isEmpty(fd) else {
            close(fd)
            throw .io("snapshot directory \(directory) is not empty; a snapshot needs a new or empty directory")
        }
        return fd
    }

    /// `NAME.tmp`, new (O_EXCL), never through a link.
    static func createTemporary(in dirFD: Int32, _ directory: String, _ name: String) throws(SnapshotError) -> Int32 {
        let fd = openat(dirFD, name + ".tmp", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io("cannot create \(directory)/\(name).tmp: \(String(cString: strerror(errno)))") }
        return fd
    }

    /// Makes `NAME.tmp` durable and renames it to `NAME` (rename replaces a link, never follows it).
    static func commit(_ fd: Int32, in dirFD: Int32, _ directory: String, _ name: String) throws(SnapshotError) {
        guard fsync(fd) == 0, renameat(dirFD, name + ".tmp", dirFD, name) == 0 else {
            throw .io("saving \(directory)/\(name): \(String(cString: strerror(errno)))")
        }
    }

    /// Writes `bytes` as `NAME` through a temporary file.
    static func writeFile(in dirFD: Int32, _ directory: String, _ name: String, _ bytes: [UInt8]) throws(SnapshotError) {
        let fd = try createTemporary(in: dirFD, directory, name)
        defer { close(fd) }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw .io("writing \(directory)/\(name).tmp: \(String(cString: strerror(errno)))") }
        try commit(fd, in: dirFD, directory, name)
    }

    private static func isEmpty(_ fd: Int32) -> Bool {
        let copy = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)  // its own offset; closedir closes it
        guard copy >= 0 else { return false }
        guard let stream = fdopendir(copy) else {
            close(copy)
            return false
        }
        defer { closedir(stream) }
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if name != [0x2E] && name != [0x2E, 0x2E] { return false }
        }
        return true
    }
}
