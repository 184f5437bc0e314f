#if canImport(Glibc)
import Glibc
#endif

/// A VM holds a shared `flock` on its image's base while it runs: `vireo images rm` takes the lock
/// exclusively (without waiting) to know the base is unused.
public final class BaseLock {
    private let fd: Int32
    /// The locked descriptor, for a child that holds the lock on (the daemon's VMM shim).
    public var descriptor: Int32 { fd }

    /// Takes a shared lock on `base` (released by `deinit` or when the process ends).
    public init(base: String) throws {
        fd = open(base, O_RDONLY | O_CLOEXEC)
        guard fd >= 0, flock(fd, LOCK_SH) == 0 else {
            throw ImageError("cannot lock the base image \(base): \(String(cString: strerror(errno)))")
        }
    }

    deinit { close(fd) }

    /// True when some process holds a lock on `base`.
    static func inUse(_ base: String) -> Bool {
        let fd = open(base, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return flock(fd, LOCK_EX | LOCK_NB) != 0
    }
}
