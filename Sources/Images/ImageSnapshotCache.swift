#if canImport(Glibc)
import Glibc
#endif

/// Per-image "ready" snapshots under `<images>/warm/images/<base>/<key>` (base = the image config's
/// digest, the name of its ext4 base): the generic warm-start snapshot taken further, with the
/// image's root disk mounted and entered and its program pre-read into the page cache. Such a
/// snapshot is only valid with the root disk exactly as it was then, so it holds that disk's
/// overlay (`root.overlay` + `root.overlay.map`, the blocks the guest had written over the base) as
/// a read-only template; each run restores with a copy of it. Staged and committed like the
/// generic ones (see `WarmSnapshotCache`), and removed with the image's base.
public struct ImageSnapshotCache: Sendable {
    public let warm: WarmSnapshotCache
    public let directory: String
    public static let templateFiles = ["root.overlay", "root.overlay.map"]

    /// Creates `<images>/warm/images` (0700); refuses one that is a link, another user's or writable by others.
    public init(store: ImageStore) throws(ImageError) {
        warm = try WarmSnapshotCache(store: store)
        directory = warm.directory + "/images"
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw ImageError("cannot create \(directory): \(String(cString: strerror(errno)))")
        }
        if let problem = WarmSnapshotCache.untrusted(directory, directory: true) { throw ImageError(problem) }
    }

    /// The key: the generic snapshot's key, and the base by name and by identity (a base removed and
    /// built again is another file system, whose blocks the snapshot's page cache does not describe).
    public static func key(generic: String, base: String) throws(ImageError) -> String {
        var info = stat()
        guard stat(base, &info) == 0 else { throw ImageError("cannot stat the image's base \(base): \(String(cString: strerror(errno)))") }
        let text = "vireo image snapshot v1\n\(generic)\n\(base)\n\(info.st_dev) \(info.st_ino) \(info.st_size) \(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)\n"
        return Digest.of(Array(text.utf8)).hex
    }

    /// `<images>/warm/images/<base name>` for a base path `…/bases/HEX.ext4`.
    public func baseDirectory(_ base: String) -> String {
        let name = base.split(separator: "/").last.map(String.init) ?? base
        return directory + "/" + (name.hasSuffix(".ext4") ? String(name.dropLast(5)) : name)
    }

    public func path(base: String, key: String) -> String { baseDirectory(base) + "/" + key }

    /// The snapshot directory when one is cached; nil when none is; throws why a cached one cannot be trusted.
    public func lookup(base: String, key: String) throws(ImageError) -> String? {
        let entry = path(base: base, key: key)
        var info = stat()
        guard lstat(entry, &info) == 0 else { return nil }
        if let problem = WarmSnapshotCache.untrusted(baseDirectory(base), directory: true) { throw ImageError(problem) }
        if let problem = WarmSnapshotCache.untrusted(entry, directory: true) { throw ImageError(problem) }
        for file in ["state.bin", "memory.bin"] + ImageSnapshotCache.templateFiles {
            if let problem = WarmSnapshotCache.untrusted(entry + "/" + file, directory: false) { throw ImageError(problem) }
        }
        return entry
    }

    /// Holds `KEY.lock` in the base's directory exclusively, or returns nil at once when another run holds it.
    public func tryLock(base: String, key: String) throws(ImageError) -> WarmSnapshotLock? {
        let parent = baseDirectory(base)
        if mkdir(parent, 0o700) != 0 && errno != EEXIST {
            throw ImageError("cannot create \(parent): \(String(cString: strerror(errno)))")
        }
        if let problem = WarmSnapshotCache.untrusted(parent, directory: true) { throw ImageError(problem) }
        return try WarmSnapshotLock(path: "\(parent)/\(key).lock", wait: false)
    }

    /// Moves `staging/snapshot` (with its templates) to its place and removes the staging directory.
    public func commit(staging: String, base: String, key: String) throws(ImageError) {
        let parent = baseDirectory(base)
        if mkdir(parent, 0o700) != 0 && errno != EEXIST {
            warm.abandon(staging)
            throw ImageError("cannot create \(parent): \(String(cString: strerror(errno)))")
        }
        try warm.commit(staging: staging, to: path(base: base, key: key))
    }

    /// Removes the cached snapshot (moved aside first, so no reader sees half of it).
    public func discard(base: String, key: String) {
        let aside = "\(warm.directory)/.\(key).discarded.\(getpid())"
        if rename(path(base: base, key: key), aside) == 0 { WarmSnapshotCache.removeTree(aside) }
    }

    /// Removes every snapshot of the images whose bases are not in `keptBases` (names `HEX.ext4`)
    /// nor in use; returns the bytes freed.
    public static func collectGarbage(root: String, keptBases: Set<String>, inUse: (String) -> Bool) -> Int64 {
        let directory = root + "/warm/images"
        guard let names = try? listDirectory(directory) else { return 0 }
        var freed: Int64 = 0
        for name in names where !name.hasPrefix(".") && !keptBases.contains(name + ".ext4") {
            if inUse("\(root)/bases/\(name).ext4") { continue }
            let entry = directory + "/" + name
            let aside = "\(root)/warm/.\(name).removed.\(getpid())"
            guard rename(entry, aside) == 0 else { continue }
            freed += ImageStore.allocatedBytes(aside)
            WarmSnapshotCache.removeTree(aside)
        }
        return freed
    }

    private static func listDirectory(_ path: String) throws -> [String] {
        guard let stream = opendir(path) else { throw ImageError("cannot list \(path)") }
        defer { closedir(stream) }
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
