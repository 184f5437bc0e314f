import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Image files opened beneath configured roots without following any link (issue 12): a VMM the
/// daemon starts gets the daemon's image roots in its spec, and opens kernel, initrd, disks,
/// overlays and snapshot state component by component from the root that contains them, each
/// step `O_NOFOLLOW` (what openat2's RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS does, without needing
/// Linux 5.6). The daemon checked the path and stored it link-free; a file or directory swapped
/// for a link after that check (to a root-only file, out of the roots) is refused here, and the
/// descriptor, fstat-checked (its type, and a single link), is all the VMM uses afterwards. Without roots (`vireo run`) nothing changes.
public enum BeneathRoots {
    private static let configured = Mutex<[String]?>(nil)

    /// Sets the roots (absolute, link-free directories) once, before the Machine is built.
    public static func configure(_ roots: [String]?) {
        let cleaned = roots?.map { $0.count > 1 && $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        configured.withLock { $0 = cleaned }
    }

    /// The configured roots, nil when images may be opened anywhere.
    public static var roots: [String]? { configured.withLock { $0 } }

    /// O_PATH (Linux, 0o10000000 on every architecture but alpha/parisc/sparc): not exported by Glibc's module.
    private static let pathOnly: Int32 = 0o10000000

    /// Opens `path`, which must lie beneath one of `roots`, without following any link on the way.
    static func open(_ path: String, flags: Int32, mode: mode_t, kinds: CheckedOpen.Kinds,
                     roots: [String]) -> Result<Int32, CheckedOpen.Refusal> {
        let containing = roots.filter { $0 == "/" || path == $0 || path.hasPrefix($0 + "/") }
        guard path.hasPrefix("/"), let root = containing.max(by: { $0.utf8.count < $1.utf8.count }) else {
            return .failure(.notBeneathRoots("is outside the image roots (\(roots.joined(separator: ", ")))"))
        }
        let rest = root == "/" ? path.dropFirst() : path.dropFirst(root.utf8.count + 1)
        let components = rest.split(separator: "/").map(String.init)
        guard let last = components.last, !components.contains(".."), !components.contains(".") else {
            return .failure(.notBeneathRoots("does not name a file beneath the image root \(root)"))
        }
        var directory = Glibc.open(root, pathOnly | O_DIRECTORY | O_CLOEXEC)
        guard directory >= 0 else { return .failure(.system(errno: errno)) }
        for component in components.dropLast() {
            // O_PATH|O_NOFOLLOW opens a link as itself, which O_DIRECTORY then refuses (ENOTDIR).
            let next = openat(directory, component, pathOnly | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            let error = errno
            close(directory)
            guard next >= 0 else {
                return .failure(error == ENOTDIR || error == ELOOP
                    ? .notBeneathRoots("has '\(component)' on its way from \(root), which is a symbolic link or no directory")
                    : .system(errno: error))
            }
            directory = next
        }
        defer { close(directory) }
        let opened = CheckedOpen.openAt(directory, last, flags: flags, mode: mode, kinds: kinds)
        // A file with other hard links could be any file of this filesystem (a root-only one linked
        // into a root where protected_hardlinks is off, or by root): images have one name.
        if case let .success(fd) = opened {
            var info = stat()
            if fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_nlink > 1 {
                close(fd)
                return .failure(.notBeneathRoots("has \(info.st_nlink - 1) other hard link(s) and could be any file of its filesystem"))
            }
        }
        return opened
    }
}
