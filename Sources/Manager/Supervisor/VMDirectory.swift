import Foundation

/// Prepares a VM's directories before each start (issue 12, finding 1). The VM directory is the
/// daemon's (root, 0755): pid and exit records and the VMM's log, which the daemon trusts. `vmm/`
/// below it belongs to the VMM's user: console logs and the control socket. Everything is done
/// through directory descriptors without following links, so files the VM's user planted in an
/// older layout, or in `vmm/`, are removed or refused instead of being followed as root.
enum VMDirectory {
    /// Names the VMM or its user could write in the VM directory itself in the older layout (and the
    /// previous run's rotated vmm.log).
    static let untrustedLegacyNames = ["console.log", "console.log.1", "api.sock", "vmm.pid.tmp", "vmm.exit.tmp",
                                       "vmm.pid", "vmm.exit", "vmm.log", "vmm.log.1"]

    static func prepare(_ paths: VMPaths, owner: VMOwner?) throws(APIError) {
        let parent = (paths.directory as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        } catch {
            throw APIError.internal("cannot create \(parent): \(error)")
        }
        if mkdir(paths.directory, 0o755) != 0 && errno != EEXIST { throw failure("create", paths.directory) }
        let dirFD = open(paths.directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard dirFD >= 0 else { throw failure("open", paths.directory) }
        defer { close(dirFD) }
        var info = stat()
        guard fstat(dirFD, &info) == 0 else { throw failure("stat", paths.directory) }
        // An older daemon handed the whole directory to the VM's user: take it back.
        if info.st_uid != geteuid() || info.st_mode & 0o7777 != 0o755 {
            guard fchown(dirFD, geteuid(), getegid()) == 0, fchmod(dirFD, 0o755) == 0 else {
                throw failure("take back", paths.directory)
            }
        }
        for name in untrustedLegacyNames { unlinkat(dirFD, name, 0) }  // unlink removes a link, never its target

        let vmm = VMPaths.vmmDirectoryName
        if mkdirat(dirFD, vmm, 0o700) != 0 && errno != EEXIST { throw failure("create", paths.vmmDirectory) }
        guard fstatat(dirFD, vmm, &info, AT_SYMLINK_NOFOLLOW) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw APIError.internal("\(paths.vmmDirectory) is not a directory")
        }
        let uid = owner?.uid ?? geteuid(), gid = owner?.gid ?? getegid()
        guard fchownat(dirFD, vmm, uid, gid, AT_SYMLINK_NOFOLLOW) == 0 else { throw failure("hand over", paths.vmmDirectory) }
        let vmmFD = openat(dirFD, vmm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard vmmFD >= 0 else { throw failure("open", paths.vmmDirectory) }
        defer { close(vmmFD) }
        // The console logs the VMM reopens as its user: kept (and handed over) only when they are
        // plain files of their own; links, FIFOs and hard links to other files are removed.
        for name in [VMPaths.consoleLogFile, VMPaths.rotatedConsoleLogFile] {
            let fd = openat(vmmFD, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            var file = stat()
            if fd >= 0, fstat(fd, &file) == 0, file.st_mode & S_IFMT == S_IFREG, file.st_nlink == 1 {
                _ = fchown(fd, uid, gid)
            } else {
                unlinkat(vmmFD, name, 0)
            }
            if fd >= 0 { close(fd) }
        }
    }

    private static func failure(_ what: String, _ path: String) -> APIError {
        .internal("cannot \(what) \(path): \(String(cString: strerror(errno)))")
    }
}
