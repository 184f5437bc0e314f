#if canImport(Glibc)
import Glibc
#endif

/// Snapshot targets of a VMM that runs as an unprivileged user (VMMPrivileges): its parent is
/// usually root's, so the daemon creates the empty target for it, owned by the VMM's user (the VMM
/// accepts an empty directory of its own and fills it with O_EXCL|O_NOFOLLOW), and takes the
/// finished snapshot back for root, so that a later VMM with the same uid cannot alter it.
enum SnapshotOwnership {
    /// Creates `directory` (0700) if absent and gives it to `owner`; nothing to do for root.
    static func handOver(_ directory: String, to owner: (uid: uid_t, gid: gid_t)?) throws(APIError) {
        guard let owner, owner.uid != 0 else { return }
        if mkdir(directory, 0o700) != 0 && errno != EEXIST { throw failure("create", directory) }
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw failure("open", directory) }
        defer { close(fd) }
        guard fchown(fd, owner.uid, owner.gid) == 0 else { throw failure("hand over", directory) }
    }

    /// Gives the directory and the plain files in it back to root. Links and files with other
    /// links are left alone (chown never follows them: AT_SYMLINK_NOFOLLOW and an nlink check).
    static func takeBack(_ directory: String, from owner: (uid: uid_t, gid: gid_t)?) {
        guard let owner, owner.uid != 0 else { return }
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_uid == owner.uid else { return }
        let listing = dup(fd)
        if listing >= 0, let stream = fdopendir(listing) {
            defer { closedir(stream) }
            while let entry = readdir(stream) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                guard name != ".", name != ".." else { continue }
                var file = stat()
                guard fstatat(fd, name, &file, AT_SYMLINK_NOFOLLOW) == 0, file.st_mode & S_IFMT == S_IFREG,
                      file.st_nlink == 1, file.st_uid == owner.uid else { continue }
                _ = fchownat(fd, name, 0, 0, AT_SYMLINK_NOFOLLOW)
            }
        } else if listing >= 0 {
            close(listing)
        }
        _ = fchown(fd, 0, 0)
    }

    private static func failure(_ what: String, _ path: String) -> APIError {
        .internal("cannot \(what) the snapshot target \(path): \(String(cString: strerror(errno)))")
    }
}
