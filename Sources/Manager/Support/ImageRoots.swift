#if canImport(Glibc)
import Glibc
#endif

/// The directories under which the daemon accepts kernels, initrds, disks and snapshots
/// (`vireo serve --image-root`); a root of `/` turns the policy off.
public struct ImageRoots: Sendable, Equatable {
    /// Absolute, symlink-free directories (resolved once, at startup).
    public let directories: [String]

    public init(_ directories: [String]) {
        self.directories = directories.map { $0.count > 1 && $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
    }

    /// Whether every path is allowed (`--image-root /`).
    public var unrestricted: Bool { directories.contains("/") }

    /// Why a path is refused; `description` completes "field 'F': '<path>' …".
    public enum Refusal: Error, Equatable, CustomStringConvertible {
        case outside([String])
        case linkLeaves([String])
        case tooManyLinks

        public var description: String {
            switch self {
            case .outside(let roots): "is outside the image roots (\(roots.joined(separator: ", "))); see vireo serve --image-root"
            case .linkLeaves(let roots): "leads outside the image roots (\(roots.joined(separator: ", "))) through '..' or a symbolic link"
            case .tooManyLinks: "has too many symbolic links"
            }
        }
    }

    /// `path` (absolute) with its symbolic links resolved, walked component by component from a
    /// root's directory descriptor with O_NOFOLLOW, so that no link or `..` can lead out of the
    /// roots, not even on the way back in. A missing tail is kept as given (the caller reports it,
    /// or creates it: overlays, snapshot targets).
    public func resolve(_ path: String) throws(Refusal) -> String {
        if unrestricted { return path }
        guard var root = root(containing: path) else { throw .outside(directories) }
        var pending = Self.components(of: String(path.dropFirst(root.count)))
        var resolved: [String] = []   // components below `root`, all existing and not links
        var links = 0
        var fds: [Int32] = []         // fds[i]: the directory reached after resolved[0..<i]
        defer { fds.forEach { close($0) } }
        func reopen(_ directory: String) throws(Refusal) {
            fds.forEach { close($0) }
            fds = []
            let fd = open(directory, ImageRoots.openPath | O_DIRECTORY | O_CLOEXEC)
            guard fd >= 0 else { throw .outside(directories) }
            fds = [fd]
        }
        try reopen(root)
        while !pending.isEmpty {
            let name = pending.removeFirst()
            if name == ".." {
                guard !resolved.isEmpty else { throw .linkLeaves(directories) }
                resolved.removeLast()
                close(fds.removeLast())
                continue
            }
            let fd = openat(fds.last!, name, ImageRoots.openPath | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else {
                // Missing (or not a directory on the way): nothing below exists to lead anywhere.
                guard !pending.contains("..") else { throw .linkLeaves(directories) }
                return Self.join(root, resolved + [name] + pending)
            }
            var info = stat()
            fstat(fd, &info)
            if info.st_mode & S_IFMT == S_IFLNK {
                close(fd)
                links += 1
                guard links <= 40, let target = Self.readLink(fds.last!, name) else { throw .tooManyLinks }
                if target.hasPrefix("/") {
                    guard let next = self.root(containing: target) else { throw .linkLeaves(directories) }
                    root = next
                    resolved = []
                    try reopen(root)
                    pending = Self.components(of: String(target.dropFirst(root.count))) + pending
                } else {
                    pending = Self.components(of: target) + pending
                }
                continue
            }
            resolved.append(name)
            fds.append(fd)
        }
        return Self.join(root, resolved)
    }

    /// O_PATH (Linux): a descriptor that names a file without opening it; not exported by Glibc's module.
    private static let openPath: Int32 = 0o10000000

    /// The root lexically containing `path`, longest first.
    private func root(containing path: String) -> String? {
        directories.filter { path == $0 || path.hasPrefix($0 == "/" ? "/" : $0 + "/") }.max { $0.count < $1.count }
    }

    private static func components(of path: String) -> [String] {
        path.split(separator: "/").map(String.init).filter { $0 != "." }
    }

    private static func join(_ root: String, _ components: [String]) -> String {
        components.isEmpty ? root : (root == "/" ? "" : root) + "/" + components.joined(separator: "/")
    }

    private static func readLink(_ directory: Int32, _ name: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlinkat(directory, name, &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
