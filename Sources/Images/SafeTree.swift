#if canImport(Glibc)
import Glibc
#endif

/// File operations confined to one directory tree: every path is walked component by component with
/// `O_NOFOLLOW`, so neither `..` nor a symlink (planted by an earlier layer) can lead outside it.
final class SafeTree {
    let rootFD: Int32
    let rootPath: String

    init(path: String) throws {
        rootPath = path
        rootFD = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard rootFD >= 0 else { throw ImageError("cannot open \(path): \(SafeTree.error())") }
    }

    deinit { close(rootFD) }

    static func error() -> String { String(cString: strerror(errno)) }

    /// Writes all of `bytes` to `fd` (retrying short writes and EINTR); `failure` names what failed.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, failure: () -> ImageError) throws(ImageError) {
        var rest = bytes
        while !rest.isEmpty {
            let n = write(fd, rest.baseAddress, rest.count)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw failure() }
            rest = UnsafeRawBufferPointer(rebasing: rest[n...])
        }
    }

    /// `path` as components, refusing absolute escapes and `..`; "" for the root itself.
    static func components(_ path: String) throws -> [String] {
        // Bounded like Linux's PATH_MAX: the walk and removal recurse once per level.
        guard path.utf8.count <= 4096 else { throw ImageError("'\(path.prefix(64))…' is longer than 4096 bytes") }
        var parts: [String] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            guard part != ".." else { throw ImageError("'\(path)' contains '..': it would write outside the image's root") }
            parts.append(String(part))
        }
        guard parts.count <= 256 else { throw ImageError("'\(path.prefix(64))…' is nested more than 256 levels deep") }
        return parts
    }

    /// Opens the directory `parts` names; creates missing ones (mode 0755) when `create`.
    /// A symlink or non-directory on the way is refused: the caller names the entry.
    func openDirectory(_ parts: ArraySlice<String>, create: Bool) throws -> Int32 {
        var fd = dup(rootFD)
        guard fd >= 0 else { throw ImageError("dup: \(SafeTree.error())") }
        var walked: [String] = []
        for part in parts {
            walked.append(part)
            var next = openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if next < 0 && errno == ENOENT && create {
                if mkdirat(fd, part, 0o755) != 0 && errno != EEXIST {
                    let reason = SafeTree.error()
                    close(fd)
                    throw ImageError("cannot create directory '\(walked.joined(separator: "/"))': \(reason)")
                }
                next = openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            if next < 0 {
                let code = errno
                close(fd)
                let where_ = walked.joined(separator: "/")
                if code == ELOOP || code == ENOTDIR {
                    var info = stat()
                    let isLink = fstatat(rootFD, where_, &info, AT_SYMLINK_NOFOLLOW) == 0 && (info.st_mode & S_IFMT) == S_IFLNK
                    throw ImageError(isLink ? "'\(where_)' is a symlink: Vireo never writes through a link"
                                            : "'\(where_)' is not a directory")
                }
                throw ImageError("cannot open '\(where_)': \(String(cString: strerror(code)))")
            }
            close(fd)
            fd = next
        }
        return fd
    }

    /// What `name` in directory `fd` is (its `st_mode & S_IFMT`), or nil when absent.
    static func kind(_ fd: Int32, _ name: String) -> mode_t? {
        var info = stat()
        guard fstatat(fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
        return info.st_mode & S_IFMT
    }

    /// Removes `name` in `fd`, a directory with everything under it; never follows a link.
    static func remove(_ fd: Int32, _ name: String) throws {
        guard let kind = kind(fd, name) else { return }
        if kind == S_IFDIR {
            let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard child >= 0 else { throw ImageError("cannot open '\(name)' to remove it: \(error())") }
            defer { close(child) }
            for entry in try list(child) { try remove(child, entry) }
            guard unlinkat(fd, name, AT_REMOVEDIR) == 0 else { throw ImageError("cannot remove directory '\(name)': \(error())") }
        } else {
            guard unlinkat(fd, name, 0) == 0 else { throw ImageError("cannot remove '\(name)': \(error())") }
        }
    }

    /// The names in directory `fd` (without . and ..).
    static func list(_ fd: Int32) throws -> [String] {
        let copy = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard copy >= 0, let dir = fdopendir(copy) else { throw ImageError("cannot list a directory: \(error())") }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Removes a whole tree at an absolute path (the staging directory), never following links.
    static func removeAll(_ path: String) {
        guard let slash = path.lastIndex(of: "/") else { return }
        let parent = open(slash == path.startIndex ? "/" : String(path[..<slash]), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard parent >= 0 else { return }
        defer { close(parent) }
        try? remove(parent, String(path[path.index(after: slash)...]))
    }
}
