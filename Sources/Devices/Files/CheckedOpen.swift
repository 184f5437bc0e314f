#if canImport(Glibc)
import Glibc
#endif

/// Opens user-named files without blocking on FIFOs or devices and refuses every file type but
/// the allowed ones: a FIFO as a kernel or disk must fail at once, not hang the VMM or daemon.
public enum CheckedOpen {
    /// Which file types a caller accepts.
    public enum Kinds: Sendable { case regular, regularOrBlockDevice }

    /// Why a file was refused; never carries any of its bytes.
    public enum Refusal: Error, Equatable, Sendable, CustomStringConvertible {
        case system(errno: Int32)
        case wrongKind(String)
        /// Outside the image roots, or reached through a link (BeneathRoots).
        case notBeneathRoots(String)

        public var description: String {
            switch self {
            case let .system(errno): return String(cString: strerror(errno))
            case let .wrongKind(kind): return "is \(kind), not a regular file"
            case let .notBeneathRoots(problem): return problem
            }
        }
    }

    /// `open(path, flags | O_NONBLOCK)`, checked with stat before (so a device is never opened)
    /// and fstat after (so a swap in between is caught); returns a blocking descriptor.
    /// `noFollow` refuses a symbolic link as the last path component. `image`: an image file
    /// (kernel, initrd, disk, overlay, snapshot state), opened beneath the configured image roots
    /// without following any link when there are roots (BeneathRoots).
    public static func open(_ path: String, flags: Int32, mode: mode_t = 0, kinds: Kinds = .regular,
                            noFollow: Bool = false, image: Bool = false) -> Result<Int32, Refusal> {
        if image, let roots = BeneathRoots.roots {
            return BeneathRoots.open(path, flags: flags, mode: mode, kinds: kinds, roots: roots)
        }
        var before = stat()
        let statted = noFollow ? lstat(path, &before) : stat(path, &before)
        if statted == 0, let refusal = refusal(before.st_mode, kinds) { return .failure(refusal) }
        let fd = Glibc.open(path, flags | O_NONBLOCK | O_CLOEXEC | (noFollow ? O_NOFOLLOW : 0), mode)
        guard fd >= 0 else { return .failure(errno == ELOOP && noFollow ? .wrongKind("a symbolic link") : .system(errno: errno)) }
        return check(fd, kinds)
    }

    /// The same checks for a file opened relative to a directory descriptor, never following a link.
    public static func openAt(_ directory: Int32, _ name: String, flags: Int32, mode: mode_t = 0,
                              kinds: Kinds = .regular) -> Result<Int32, Refusal> {
        var before = stat()
        if fstatat(directory, name, &before, AT_SYMLINK_NOFOLLOW) == 0, let refusal = refusal(before.st_mode, kinds) {
            return .failure(refusal)
        }
        let fd = Glibc.openat(directory, name, flags | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { return .failure(errno == ELOOP ? .wrongKind("a symbolic link") : .system(errno: errno)) }
        return check(fd, kinds)
    }

    private static func check(_ fd: Int32, _ kinds: Kinds) -> Result<Int32, Refusal> {
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let error = errno
            close(fd)
            return .failure(.system(errno: error))
        }
        if let refusal = refusal(info.st_mode, kinds) {
            close(fd)
            return .failure(refusal)
        }
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
        return .success(fd)
    }

    /// nil when `mode` is an allowed file type, else what it is instead.
    public static func refusal(_ mode: mode_t, _ kinds: Kinds) -> Refusal? {
        switch mode & S_IFMT {
        case S_IFREG: return nil
        case S_IFBLK: return kinds == .regularOrBlockDevice ? nil : .wrongKind("a block device")
        case S_IFIFO: return .wrongKind("a FIFO")
        case S_IFDIR: return .wrongKind("a directory")
        case S_IFCHR: return .wrongKind("a character device")
        case S_IFSOCK: return .wrongKind("a socket")
        case S_IFLNK: return .wrongKind("a symbolic link")
        default: return .wrongKind("of an unknown type")
        }
    }
}
