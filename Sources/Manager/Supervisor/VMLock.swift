#if canImport(Glibc)
import Glibc
#endif

/// One VMM per VM, enforced (issue 12, finding 2): `vmm.lock` in the VM directory is flock'ed by
/// the daemon before every start and handed to the shim and the VMM as descriptor 3, so it stays
/// held for as long as either runs, across daemon crashes and restarts. A start while it is held
/// is refused, whatever the daemon believes about the old VMM's liveness.
enum VMLock {
    /// The descriptor the shim and the VMM inherit it as.
    static let inheritedFD: Int32 = 3

    /// Takes the lock; the caller hands the descriptor to the shim, then closes its own copy.
    static func acquire(_ paths: VMPaths, name: String) throws(APIError) -> Int32 {
        let fd = open(paths.lockFile, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .internal("cannot open \(paths.lockFile): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw APIError(status: 409, code: "vmm_still_running",
                           message: "a VMM of VM '\(name)' still runs (it holds \(paths.lockFile)); refusing to start a second one")
        }
        return fd
    }

    /// True while some process (a VMM or its shim) holds the lock.
    static func isHeld(_ paths: VMPaths) -> Bool {
        let fd = open(paths.lockFile, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { return true }
        flock(fd, LOCK_UN)
        return false
    }
}
