#if canImport(Glibc)
import Glibc
#endif

/// Applies image layers, bottom first, to a staging directory with OCI semantics: `.wh.NAME`
/// deletes NAME from the layers below, `.wh..wh..opq` empties a directory of what the layers below
/// put there, and everything else is created with its mode, owner, times and xattrs. Hostile input
/// is refused: `..`, writing through a symlink, a hard link to a missing or outside file.
public final class LayerApplier {
    static let whiteoutPrefix = ".wh."
    static let opaqueMarker = ".wh..wh..opq"

    private let tree: SafeTree
    /// Ownership can be set only as root; otherwise files keep the caller's and `ownershipSkipped` says so.
    private let canChown = geteuid() == 0
    public private(set) var ownershipSkipped = false
    /// Totals for sizing the filesystem: bytes of file data and the number of inodes.
    public private(set) var dataBytes: Int64 = 0
    public private(set) var inodes = 0
    /// Paths this layer created (for opaque directories: those stay).
    private var createdInLayer: Set<String> = []
    /// What all layers applied so far have written (bombs stop here).
    private var budget = UnpackBudget()

    public init(root: String) throws { tree = try SafeTree(path: root) }

    /// Applies one uncompressed layer read from `fd`; returns the digest of the uncompressed bytes
    /// (the layer's `diff_id`), read to the end.
    @discardableResult
    public func apply(layer fd: Int32, name: String) throws -> Digest {
        createdInLayer = []
        let reader = TarReader(fd: fd, hashing: true)
        do {
            while let entry = try reader.next() {
                try budget.spendEntry()
                try apply(entry, reader: reader)
            }
        } catch let error as ImageError {
            throw ImageError("layer \(name): \(error.description)")
        }
        return reader.digest!
    }

    private func apply(_ entry: TarEntry, reader: TarReader) throws {
        let parts: [String]
        do { parts = try SafeTree.components(entry.path) } catch let error as ImageError {
            throw ImageError("entry \(error.description)")
        }
        guard let name = parts.last else { return try applyRootAttributes(entry) }
        let path = parts.joined(separator: "/")
        let parent: Int32
        do { parent = try tree.openDirectory(parts.dropLast(), create: true) } catch let error as ImageError {
            throw ImageError("entry '\(entry.path)': \(error.description)")
        }
        defer { close(parent) }

        if name == LayerApplier.opaqueMarker {
            return try clearLower(parent, prefix: parts.dropLast().joined(separator: "/"))
        }
        if name.hasPrefix(LayerApplier.whiteoutPrefix) {
            let hidden = String(name.dropFirst(LayerApplier.whiteoutPrefix.count))
            guard !hidden.isEmpty, hidden != ".", hidden != ".." else { throw ImageError("entry '\(entry.path)': bad whiteout") }
            return try SafeTree.remove(parent, hidden)
        }
        createdInLayer.insert(path)
        inodes += 1
        let existing = SafeTree.kind(parent, name)
        if entry.kind == .directory {
            if existing != nil && existing != S_IFDIR { try SafeTree.remove(parent, name) }
            if existing != S_IFDIR {
                guard mkdirat(parent, name, 0o700) == 0 else { throw failure(entry, "mkdir") }
            }
            let fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw failure(entry, "open") }
            defer { close(fd) }
            try setAttributes(fd: fd, entry)
            return
        }
        if existing != nil { try SafeTree.remove(parent, name) }
        switch entry.kind {
        case .file:
            let fd = openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw failure(entry, "create") }
            defer { close(fd) }
            try reader.readData { chunk in
                try budget.spend(bytes: chunk.count)
                try SafeTree.writeAll(fd, chunk) { failure(entry, "write") }
            }
            dataBytes += entry.size
            try setAttributes(fd: fd, entry)
        case .symlink:
            guard symlinkat(entry.linkTarget, parent, name) == 0 else { throw failure(entry, "symlink") }
            if canChown { fchownat(parent, name, entry.uid, entry.gid, AT_SYMLINK_NOFOLLOW) }
            setTimes(parent, name, entry, flags: AT_SYMLINK_NOFOLLOW)
        case .hardLink:
            try link(entry, parent: parent, name: name)
        case .characterDevice, .blockDevice, .fifo:
            // Device nodes need root; an image rarely has any (the guest's devtmpfs provides /dev).
            guard canChown || entry.kind == .fifo else { ownershipSkipped = true; inodes -= 1; return }
            let type: mode_t = entry.kind == .fifo ? S_IFIFO : (entry.kind == .characterDevice ? S_IFCHR : S_IFBLK)
            let device = LinuxCalls.makeDevice(major: entry.deviceMajor, minor: entry.deviceMinor)
            guard mknodat(parent, name, type | 0o600, device) == 0 else { throw failure(entry, "mknod") }
            if canChown { fchownat(parent, name, entry.uid, entry.gid, AT_SYMLINK_NOFOLLOW) }
            fchmodat(parent, name, mode_t(entry.mode), 0)
            setTimes(parent, name, entry, flags: AT_SYMLINK_NOFOLLOW)
        case .directory:
            break
        }
    }

    /// A hard link to a file already in the tree (this layer or below), resolved inside the tree.
    private func link(_ entry: TarEntry, parent: Int32, name: String) throws {
        let target: [String]
        do { target = try SafeTree.components(entry.linkTarget) } catch let error as ImageError {
            throw ImageError("hard link '\(entry.path)' -> \(error.description)")
        }
        guard let targetName = target.last else { throw ImageError("hard link '\(entry.path)' has no target") }
        let targetParent: Int32
        do { targetParent = try tree.openDirectory(target.dropLast(), create: false) } catch let error as ImageError {
            throw ImageError("hard link '\(entry.path)' -> '\(entry.linkTarget)': \(error.description)")
        }
        defer { close(targetParent) }
        guard let kind = SafeTree.kind(targetParent, targetName), kind != S_IFDIR else {
            throw ImageError("hard link '\(entry.path)' -> '\(entry.linkTarget)': the target is missing or a directory")
        }
        // Flags 0: a link to a symlink links the symlink itself, never what it points at.
        guard linkat(targetParent, targetName, parent, name, 0) == 0 else { throw failure(entry, "link") }
    }

    /// Removes from directory `fd` (at `prefix`) everything the layers below put there.
    private func clearLower(_ fd: Int32, prefix: String) throws {
        for child in try SafeTree.list(fd) {
            let path = prefix.isEmpty ? child : prefix + "/" + child
            if !createdInLayer.contains(path) {
                try SafeTree.remove(fd, child)
            } else if SafeTree.kind(fd, child) == S_IFDIR {
                let sub = openat(fd, child, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard sub >= 0 else { throw ImageError("cannot open '\(path)': \(SafeTree.error())") }
                defer { close(sub) }
                try clearLower(sub, prefix: path)
            }
        }
    }

    private func applyRootAttributes(_ entry: TarEntry) throws {
        guard entry.kind == .directory else { throw ImageError("entry '\(entry.path)' names the root but is not a directory") }
        try setAttributes(fd: tree.rootFD, entry)
    }

    /// Owner first (chown clears set-id bits), then mode, xattrs, times.
    private func setAttributes(fd: Int32, _ entry: TarEntry) throws {
        if canChown {
            guard fchown(fd, entry.uid, entry.gid) == 0 else { throw failure(entry, "chown") }
        } else if entry.uid != geteuid() || entry.gid != getegid() {
            ownershipSkipped = true
        }
        guard fchmod(fd, mode_t(entry.mode & 0o7777)) == 0 else { throw failure(entry, "chmod") }
        for (key, value) in entry.xattrs {
            let result = LinuxCalls.setXattr(fd, key, value)
            if result != 0 && errno != ENOTSUP && errno != EPERM { throw failure(entry, "set xattr \(key)") }
        }
        var times = [timespec(tv_sec: Int(entry.modificationTime), tv_nsec: 0), timespec(tv_sec: Int(entry.modificationTime), tv_nsec: 0)]
        futimens(fd, &times)
    }

    private func setTimes(_ parent: Int32, _ name: String, _ entry: TarEntry, flags: Int32) {
        var times = [timespec(tv_sec: Int(entry.modificationTime), tv_nsec: 0), timespec(tv_sec: Int(entry.modificationTime), tv_nsec: 0)]
        utimensat(parent, name, &times, flags)
    }

    private func failure(_ entry: TarEntry, _ operation: String) -> ImageError {
        ImageError("entry '\(entry.path)': \(operation) failed: \(SafeTree.error())")
    }
}
