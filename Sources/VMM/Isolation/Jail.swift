internal import CVireoSystem
#if canImport(Glibc)
import Glibc
#endif

/// A host path shown inside the jail at the same absolute path.
public struct JailMirror: Equatable, Sendable {
    public var path: String
    public var isDirectory: Bool
    public var readOnly: Bool
}

/// A character device node created inside the jail.
public struct JailDevice: Equatable, Sendable {
    public var path: String
    public var major: UInt32
    public var minor: UInt32
    public var mode: UInt32
    /// Owned by the VMM's user (so an unprivileged VMM could reopen it); else root.
    public var ownedByVMM: Bool
}

/// The VMM's filesystem jail. In its own mount namespace the VMM mounts a small tmpfs on the
/// per-VM directory, builds there only what it needs (device nodes; the kernel and initrd
/// read-only; the console log's and API socket's directories read-write, at their host paths so
/// no path changes meaning), pivot_roots into it, detaches the old root and makes the tmpfs
/// read-only. The host sees an empty directory; everything vanishes with the namespace.
public struct JailLayout: Equatable, Sendable {
    public var root: String
    /// True when Vireo created `root` (and removes it afterwards).
    public var createdRoot: Bool
    public var mirrors: [JailMirror]
    public var devices: [JailDevice]
    /// The tmpfs, device nodes and `.old-root` were made ahead (IsolationAhead); `enter` only
    /// hands the VMM's devices to its user and adds the mirrors.
    var preparedAhead = false

    /// Device nodes the VMM may need: KVM, a random source, TUN for TAP networking (when the host has it;
    /// TAP fds are opened before the jail, so the node is only there for a reopen).
    static let devicePaths: [(String, UInt32, Bool)] = [
        ("/dev/kvm", 0o600, true), ("/dev/urandom", 0o666, false), ("/dev/net/tun", 0o600, true),
    ]

    /// Plans a jail at `root` for `config`'s files.
    static func plan(root: String, config: VMConfig) throws(VMMError) -> JailLayout {
        var layout = JailLayout(root: root, createdRoot: false, mirrors: [], devices: [])
        func addDirectory(of path: String?, option: String) throws(VMMError) {
            guard let path, let directory = resolvedPath(parentDirectory(of: path)) else { return }
            guard directory != "/" else {
                throw .invalidConfiguration("\(option) \(path) is in /, which cannot be shared into the jail; use a directory of its own")
            }
            guard !root.hasPrefix(directory + "/") else {
                throw .invalidConfiguration("\(option) \(path): its directory contains the jail \(root); use a directory of its own")
            }
            layout.mirrors.append(JailMirror(path: directory, isDirectory: true, readOnly: false))
        }
        try addDirectory(of: config.consoleLogPath, option: "--console-log")
        try addDirectory(of: config.apiSocketPath, option: "--api-socket")
        // The vsock device listens there and connects to `PATH_PORT` for guest-initiated streams:
        // the only sockets a jailed control thread can reach are in these mirrored directories.
        try addDirectory(of: config.vsock?.socketPath, option: "--vsock socket=")
        for path in [config.kernelPath, config.initrdPath].compactMap({ $0 }) where !path.isEmpty {
            var info = stat()
            if let resolved = resolvedPath(path), stat(resolved, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG {
                layout.mirrors.append(JailMirror(path: resolved, isDirectory: false, readOnly: true))
            }
        }
        // A path inside a mirrored directory is already visible; mount each thing once.
        var unique: [JailMirror] = []
        for mirror in layout.mirrors.sorted(by: { ($0.isDirectory ? 0 : 1, $0.path) < ($1.isDirectory ? 0 : 1, $1.path) }) {
            if unique.contains(where: { $0.path == mirror.path || ($0.isDirectory && mirror.path.hasPrefix($0.path + "/")) }) {
                continue
            }
            unique.append(mirror)
        }
        layout.mirrors = unique
        layout.devices = hostDevices()
        return layout
    }

    /// The device nodes of `devicePaths` this host has.
    static func hostDevices() -> [JailDevice] {
        var devices: [JailDevice] = []
        for (path, mode, owned) in devicePaths {
            var info = stat()
            guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFCHR else { continue }
            let rdev = UInt64(info.st_rdev)
            devices.append(JailDevice(path: path, major: UInt32(csys_dev_major(rdev)),
                                      minor: UInt32(csys_dev_minor(rdev)), mode: mode, ownedByVMM: owned))
        }
        return devices
    }

    /// A warm-pool VMM forked ahead (IsolationAhead), in its private mount namespace, root: the
    /// parts of a jail at `root` that depend on no VM: the directory on the host, the tmpfs on it
    /// (in this namespace only), the host's device nodes (owned by root until `enter`) and
    /// `.old-root`. Nil, with nothing left behind, if any step fails.
    static func prepareAhead(root: String) -> JailLayout? {
        var layout = JailLayout(root: root, createdRoot: false, mirrors: [], devices: hostDevices())
        let umaskBefore = umask(0o022)  // as `enter` makes them
        defer { umask(umaskBefore) }
        guard (try? makeDirectories(parentDirectory(of: root), mode: 0o711)) != nil, mkdir(root, 0o700) == 0 else { return nil }
        layout.createdRoot = true
        guard csys_mount_tmpfs(root, tmpfsOptions) == 0 else {
            rmdir(root)
            return nil
        }
        for device in layout.devices {
            let target = root + device.path
            guard (try? makeDirectories(parentDirectory(of: target), mode: 0o755)) != nil,
                  csys_mknod_char(target, device.mode, device.major, device.minor) == 0 else {
                layout.discardAhead()
                return nil
            }
            chmod(target, device.mode)
        }
        guard mkdir(root + "/.old-root", 0o700) == 0 else {
            layout.discardAhead()
            return nil
        }
        layout.preparedAhead = true
        return layout
    }

    /// Undoes `prepareAhead` in the namespace that made it: the tmpfs detached, the directory removed.
    func discardAhead() {
        _ = csys_umount_detach(root)
        rmdir(root)
    }

    static let tmpfsOptions = "mode=0755,size=1m,nr_inodes=1024"

    /// Creates the jail directory on the host if missing (the supervisor, before forking); for a
    /// VMM forked ahead, takes the one it prepared ahead if that is this jail's. `sweeping`: first
    /// remove stale `vm-<pid>` jail directories in the default place, which needs the host's PID
    /// namespace (inside another, every host pid looks gone).
    mutating func createRoot(sweeping: Bool = true) throws(VMMError) {
        if let ahead = IsolationAhead.takeJail() {
            if ahead.root == root && ahead.devices == devices {
                createdRoot = true
                preparedAhead = true
                return
            }
            ahead.discardAhead()  // another jail directory (the spec's): as for a fresh VMM
        }
        // Jails in the default place whose supervisor was SIGKILLed (empty directories on the host).
        let parent = parentDirectory(of: root)
        if sweeping && parent == IsolationPlan.defaultJailParent { StaleVMDirectories.remove(in: parent) }
        var info = stat()
        if stat(root, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else { throw .invalidConfiguration("--jail-dir \(root) is not a directory") }
            return
        }
        try makeDirectories(parentDirectory(of: root), mode: 0o711)
        guard mkdir(root, 0o700) == 0 else { throw .file(path: root, what: "cannot create the jail directory", errno: errno) }
        createdRoot = true
    }

    /// Removes the jail directory if Vireo created it (it is empty on the host side).
    func removeRoot() {
        if createdRoot { rmdir(root) }
    }

    /// Builds the jail and pivot_roots into it. Needs a private mount namespace and root privileges.
    func enter(owner: UserIdentity?, hostname: String) throws(VMMError) {
        func fail(_ what: String, _ code: Int32) -> VMMError {
            .invalidConfiguration("jail: \(what): \(String(cString: strerror(code < 0 ? -code : code)))")
        }
        umask(0o022)
        // Relative paths (the daemon's `vmm/…` names) keep their meaning when the working directory
        // exists in the jail too: it does for a mirror's parent (created on the tmpfs below).
        let workingDirectory = absolutePath(".")
        var result: Int32 = 0
        if !preparedAhead {
            result = csys_mount_tmpfs(root, JailLayout.tmpfsOptions)
            guard result == 0 else { throw fail("cannot mount a tmpfs on \(root)", result) }
        }
        for mirror in mirrors {
            let target = root + mirror.path
            try makeDirectories(parentDirectory(of: target), mode: 0o755)
            if mirror.isDirectory {
                guard mkdir(target, 0o755) == 0 || errno == EEXIST else { throw fail("mkdir \(target)", errno) }
            } else {
                let fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0o444)
                guard fd >= 0 else { throw fail("create \(target)", errno) }
                close(fd)
            }
            result = csys_bind_mount(mirror.path, target, mirror.readOnly ? 1 : 0)
            guard result == 0 else { throw fail("cannot bind \(mirror.path)", result) }
        }
        for device in devices {
            let target = root + device.path
            if !preparedAhead {
                try makeDirectories(parentDirectory(of: target), mode: 0o755)
                result = csys_mknod_char(target, device.mode, device.major, device.minor)
                guard result == 0 else { throw fail("mknod \(target)", result) }
                chmod(target, device.mode)
            }
            if device.ownedByVMM, let owner { chown(target, owner.uid, owner.gid) }
        }
        IsolationPlan.step?("jail: mirrors bound, devices handed over")
        let oldRoot = root + "/.old-root"
        guard preparedAhead || mkdir(oldRoot, 0o700) == 0 else { throw fail("mkdir \(oldRoot)", errno) }
        result = csys_pivot_root(root, oldRoot)
        guard result == 0 else { throw fail("pivot_root \(root)", result) }
        guard chdir("/") == 0 else { throw fail("chdir /", errno) }
        IsolationPlan.step?("jail: pivot_root")
        result = csys_umount_detach("/.old-root")
        guard result == 0 else { throw fail("cannot detach the host's root", result) }
        IsolationPlan.step?("jail: host's root detached")
        rmdir("/.old-root")
        result = csys_remount_read_only("/")
        guard result == 0 else { throw fail("cannot make the jail read-only", result) }
        _ = csys_sethostname(hostname)
        if workingDirectory != "/" { _ = chdir(workingDirectory) }  // else, or if missing, stay at /
    }
}

/// `a/b/c` → `a/b`; `c` → `.`; `/c` → `/`.
func parentDirectory(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    let parent = String(path[..<slash])
    return parent.isEmpty ? "/" : parent
}

/// realpath(3), or nil when the path does not exist.
func resolvedPath(_ path: String) -> String? {
    guard let pointer = realpath(path, nil) else { return nil }
    defer { free(pointer) }
    return String(cString: pointer)
}

/// `path` made absolute against the current directory (no symlink resolution).
func absolutePath(_ path: String) -> String {
    if path.hasPrefix("/") { return path }
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    guard getcwd(&buffer, buffer.count) != nil else { return path }
    let cwd = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    return (cwd == "/" ? "" : cwd) + "/" + path
}

/// mkdir -p.
func makeDirectories(_ path: String, mode: mode_t) throws(VMMError) {
    var current = path.hasPrefix("/") ? "" : "."
    for component in path.split(separator: "/") {
        current += "/" + component
        if mkdir(current, mode) != 0 && errno != EEXIST {
            throw .file(path: current, what: "cannot create directory", errno: errno)
        }
    }
}
