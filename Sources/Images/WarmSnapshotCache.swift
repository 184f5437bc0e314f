#if canImport(Glibc)
import Glibc
#endif

/// The warm-start snapshots of `vireo run --image` under `<images>/warm`: one directory per key
/// (guest kernel + image init + VM shape + vireo build), holding a snapshot of the image init
/// waiting for a workload. Written by one process at a time (an exclusive `flock` on `KEY.lock`),
/// staged in `.KEY.tmp.*` and renamed into place, and used only when the directory and its files are
/// ours and nobody else can write them.
public struct WarmSnapshotCache: Sendable {
    public let directory: String

    /// What a warm-start snapshot depends on: a change to any of these makes another key.
    public struct Inputs: Sendable {
        public var kernel: String
        public var initramfs: String
        public var commandLine: String
        /// `--cpus` and `--memory` as given (empty: the VMM's defaults).
        public var cpus: String
        public var memory: String
        /// Identifies the vireo binary (its size and modification time): a rebuilt VMM may save
        /// snapshots differently.
        public var build: String

        public init(kernel: String, initramfs: String, commandLine: String, cpus: String, memory: String, build: String) {
            self.kernel = kernel
            self.initramfs = initramfs
            self.commandLine = commandLine
            self.cpus = cpus
            self.memory = memory
            self.build = build
        }
    }

    /// Creates `<images>/warm` (0700) and refuses one that is a link, another user's or writable by others.
    public init(store: ImageStore) throws(ImageError) {
        directory = store.root + "/warm"
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw ImageError("cannot create \(directory): \(String(cString: strerror(errno)))")
        }
        if let problem = WarmSnapshotCache.untrusted(directory, directory: true) { throw ImageError(problem) }
    }

    /// The key: SHA-256 over the kernel's and the init's bytes and the rest of `inputs`.
    public static func key(_ inputs: Inputs) throws(ImageError) -> String {
        var stream = DigestStream()
        func add(_ text: String) {
            let bytes = Array((text + "\n").utf8)
            bytes.withUnsafeBytes { stream.update($0) }
        }
        add("vireo warm-start snapshot v1")
        for (label, path) in [("kernel", inputs.kernel), ("initramfs", inputs.initramfs)] {
            add(label)
            try hashFile(path, what: label, into: &stream)
        }
        add("cmdline " + inputs.commandLine)
        add("cpus " + inputs.cpus)
        add("memory " + inputs.memory)
        add("build " + inputs.build)
        return stream.finish().hex
    }

    public func path(_ key: String) -> String { "\(directory)/\(key)" }

    /// The snapshot directory for `key` when one is cached; nil when none is; throws why a cached one
    /// cannot be trusted (then `discard` it).
    public func lookup(_ key: String) throws(ImageError) -> String? {
        let entry = path(key)
        var info = stat()
        guard lstat(entry, &info) == 0 else { return nil }
        if let problem = WarmSnapshotCache.untrusted(entry, directory: true) { throw ImageError(problem) }
        for file in ["state.bin", "memory.bin"] {
            if let problem = WarmSnapshotCache.untrusted(entry + "/" + file, directory: false) { throw ImageError(problem) }
        }
        return entry
    }

    /// Holds `KEY.lock` exclusively (waiting for another process making the same snapshot).
    public func lock(_ key: String) throws(ImageError) -> WarmSnapshotLock {
        try WarmSnapshotLock(path: "\(directory)/\(key).lock")
    }

    /// A new, empty staging directory for `key` (removed by `commit` or `abandon`).
    public func stage(_ key: String) throws(ImageError) -> String {
        var template = Array("\(directory)/.stage.XXXXXX".utf8CString)  // short: the warm-up VM's sockets live in it
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { throw ImageError("cannot create a staging directory in \(directory): \(String(cString: strerror(errno)))") }
        return String(cString: template)
    }

    /// Moves the snapshot `staging/snapshot` to its place under `key` and removes the staging directory.
    public func commit(staging: String, key: String) throws(ImageError) {
        try commit(staging: staging, to: path(key))
    }

    /// Moves `staging/snapshot` to `target` (a new name in a directory of this cache) and removes the staging directory.
    public func commit(staging: String, to target: String) throws(ImageError) {
        guard rename(staging + "/snapshot", target) == 0 else {
            let reason = String(cString: strerror(errno))
            abandon(staging)
            throw ImageError("cannot move the warm-start snapshot into \(target): \(reason)")
        }
        let parent = String(target[..<(target.lastIndex(of: "/") ?? target.endIndex)])
        let fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); close(fd) }
        abandon(staging)
    }

    /// Removes a staging directory and everything in it.
    public func abandon(_ staging: String) { WarmSnapshotCache.removeTree(staging) }

    /// Removes the cached snapshot for `key` (moved aside first, so no reader sees half of it).
    public func discard(_ key: String) {
        let aside = "\(directory)/.\(key).discarded.\(getpid())"
        if rename(path(key), aside) == 0 { WarmSnapshotCache.removeTree(aside) }
    }

    /// Why `path` must not be used: not ours, writable by group or others, a link, or the wrong kind.
    static func untrusted(_ path: String, directory: Bool) -> String? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return "\(path) is missing (\(String(cString: strerror(errno))))" }
        let kind = info.st_mode & S_IFMT
        guard kind == (directory ? S_IFDIR : S_IFREG) else {
            return "\(path) is not a \(directory ? "directory" : "regular file")"
        }
        guard info.st_uid == geteuid() else { return "\(path) belongs to another user" }
        guard info.st_mode & 0o022 == 0 else { return "\(path) is writable by others" }
        return nil
    }

    private static func hashFile(_ path: String, what: String, into stream: inout DigestStream) throws(ImageError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ImageError("cannot read the \(what) \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let size = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let count = read(fd, buffer.baseAddress, size)
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw ImageError("cannot read the \(what) \(path): \(String(cString: strerror(errno)))") }
            if count == 0 { return }
            stream.update(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        }
    }

    /// Removes a directory of plain files (what a snapshot or staging directory holds), not following links.
    static func removeTree(_ path: String) {
        if let stream = opendir(path) {
            var names: [String] = []
            while let entry = readdir(stream) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name != "." && name != ".." { names.append(name) }
            }
            closedir(stream)
            for name in names {
                let child = path + "/" + name
                var info = stat()
                if lstat(child, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR { removeTree(child) } else { unlink(child) }
            }
        }
        rmdir(path)
    }
}

/// An exclusive `flock` on a warm-start key's lock file, released by `deinit`.
/// @unchecked Sendable: the descriptor never changes; the hand-off thread only keeps it alive.
public final class WarmSnapshotLock: @unchecked Sendable {
    private let fd: Int32

    init(path: String) throws(ImageError) {
        guard let held = try WarmSnapshotLock.open(path, wait: true) else { throw ImageError("cannot lock \(path)") }
        fd = held
    }

    /// Nil (at once) when `wait` is false and another process holds the lock.
    convenience init?(path: String, wait: Bool) throws(ImageError) {
        guard let held = try WarmSnapshotLock.open(path, wait: wait) else { return nil }
        self.init(fd: held)
    }

    private init(fd: Int32) { self.fd = fd }

    private static func open(_ path: String, wait: Bool) throws(ImageError) -> Int32? {
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ImageError("cannot open \(path): \(String(cString: strerror(errno)))") }
        while flock(fd, wait ? LOCK_EX : LOCK_EX | LOCK_NB) != 0 {
            if errno == EWOULDBLOCK && !wait {
                close(fd)
                return nil
            }
            guard errno == EINTR else {
                let reason = String(cString: strerror(errno))
                close(fd)
                throw ImageError("cannot lock \(path): \(reason)")
            }
        }
        return fd
    }

    deinit { close(fd) }
}
