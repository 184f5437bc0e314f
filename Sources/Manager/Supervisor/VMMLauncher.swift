#if canImport(Glibc)
import Glibc
#endif

/// Starts one VMM process (`vireo run …`) for a VM, in a session of its own so that it outlives
/// a daemon crash, under a tiny `/bin/sh` shim that waits for it and writes its exit status to
/// `vmm.exit`: a daemon that re-adopts a VMM after a restart is not its parent, yet still learns
/// how it ended.
struct VMMLauncher: Sendable {
    /// The `vireo` executable to run the VMM with.
    let executable: String
    /// `--console-log-max` for every VM.
    let consoleLogMaxBytes: Int
    /// The daemon's image roots, which the VMM opens images beneath without following links
    /// (the spec's `isolation.imageRoots`); nil with `--image-root /`.
    var imageRoots: [String]? = nil

    /// The shim: cd to the VM directory, start the VMM, publish its pid, wait, publish its status.
    /// User data never enters the script text: it only reaches the VMM as positional arguments.
    static let shimScript = """
        cd "$1" || exit 127
        shift
        "$@" </dev/null &
        echo $! > vmm.pid.tmp && mv -f vmm.pid.tmp vmm.pid
        wait $!
        echo $? > vmm.exit.tmp && mv -f vmm.exit.tmp vmm.exit
        """

    /// The VMM's spec for a definition: the definition's own spec plus what every daemon VM gets
    /// (no terminal, a rotated console log and a control socket, relative to the VM directory) and
    /// the confinement the daemon chose for this run.
    func spec(for definition: VMDefinition, confinement: VMMConfinement = VMMConfinement()) -> VMSpec {
        var spec = definition.spec
        if let uid = confinement.uid {
            spec.isolation.uid = uid
            spec.isolation.gid = uid
        }
        if let jail = confinement.jail { spec.isolation.jail = jail }
        spec.isolation.imageRoots = imageRoots
        spec.console = VMSpec.Console(logPath: VMPaths.consoleLogName,
                                      logMaxBytes: UInt64(max(4, consoleLogMaxBytes / 1024)) << 10,
                                      toStdout: false, fromStdin: false)
        spec.control = VMSpec.Control(apiSocket: VMPaths.apiSocketName)
        return spec
    }

    /// Writes the spec the VMM reads (`run --spec FILE`) into the VM's directory, which only the
    /// daemon writes: a fresh file (never through a planted link), readable by the daemon's user alone.
    func writeSpec(_ spec: VMSpec, paths: VMPaths) throws(APIError) {
        let text: String
        do {
            text = try spec.jsonText()
        } catch {
            throw .internal("cannot encode the VMM spec: \(error)")
        }
        let temporary = paths.specFile + ".tmp"
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .internal("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        var bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                let error = errno
                close(fd)
                unlink(temporary)
                throw .internal("cannot write \(temporary): \(String(cString: strerror(error)))")
            }
            written += count
        }
        close(fd)
        guard rename(temporary, paths.specFile) == 0 else {
            let error = errno
            unlink(temporary)
            throw .internal("cannot write \(paths.specFile): \(String(cString: strerror(error)))")
        }
    }

    /// Spawns the shim; returns its pid. Stale pid/exit files are removed first.
    /// `lockFD` (VMLock) becomes the shim's and the VMM's descriptor 3.
    /// `heldFD` (an image VM's base lock) becomes descriptor 4, held by the shim until the VMM ends.
    func spawn(_ definition: VMDefinition, confinement: VMMConfinement = VMMConfinement(), paths: VMPaths,
               lockFD: Int32, heldFD: Int32? = nil) throws(APIError) -> Int32 {
        // The directory is the daemon's alone (VMDirectory); stale records go all the same.
        for file in [paths.pidFile, paths.exitFile, paths.pidFile + ".tmp", paths.exitFile + ".tmp"] { unlink(file) }
        try writeSpec(spec(for: definition, confinement: confinement), paths: paths)
        let argv = ["vireo-shim", "-c", VMMLauncher.shimScript, "vireo-shim", paths.directory, executable,
                    "run", "--spec", VMPaths.specName]

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // A new session (POSIX_SPAWN_SETSID, 0x80 in glibc; not exported to Swift): no signal sent to
        // the daemon's process group or terminal reaches the VM.
        let setsid: Int32 = 0x80
        posix_spawnattr_setflags(&attributes, Int16(setsid | Int32(POSIX_SPAWN_SETSIGMASK) | Int32(POSIX_SPAWN_SETSIGDEF)))
        // The daemon ignores or blocks some signals (its lifecycle handlers); the VMM gets defaults.
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in 1..<32 where signal != SIGKILL && signal != SIGSTOP { sigaddset(&defaults, Int32(signal)) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        // O_APPEND: after VMMLog empties the file, writes go to its new end (not past a hole).
        posix_spawn_file_actions_addopen(&actions, 1, paths.vmmLog, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_NOFOLLOW, 0o640)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawn_file_actions_adddup2(&actions, lockFD, VMLock.inheritedFD)  // dup2 clears close-on-exec
        if let heldFD { posix_spawn_file_actions_adddup2(&actions, heldFD, VMLock.inheritedFD + 1) }
        VMMLauncher.closeFrom(VMLock.inheritedFD + (heldFD == nil ? 1 : 2), &actions)

        var pid: pid_t = 0
        let cArguments = argv.map { strdup($0) } + [nil]
        defer { for pointer in cArguments { free(pointer) } }
        let result = posix_spawn(&pid, "/bin/sh", &actions, &attributes, cArguments, environ)
        guard result == 0 else {
            throw .internal("cannot start the VMM for '\(definition.name)': posix_spawn: \(String(cString: strerror(result)))")
        }
        return pid
    }

    /// Keeps the daemon's descriptors (sockets, the database) out of the VMM, even any opened
    /// without O_CLOEXEC, through glibc's posix_spawn_file_actions_addclosefrom_np when present.
    private static func closeFrom(_ first: Int32, _ actions: inout posix_spawn_file_actions_t) {
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        // RTLD_DEFAULT is a null handle in glibc.
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return }
        let closeFrom = unsafeBitCast(symbol, to: CloseFrom.self)
        _ = closeFrom(&actions, first)
    }

    /// Reads the VMM pid the shim publishes; nil until it is there.
    static func publishedPID(_ paths: VMPaths) -> Int32? {
        guard let text = ProcessProbe.readSmallFile(paths.pidFile) else { return nil }
        return Int32(text.trimming(" \n"))
    }

    /// Reads the exit status the shim publishes; nil until it is there.
    static func publishedExitStatus(_ paths: VMPaths) -> Int? {
        guard let text = ProcessProbe.readSmallFile(paths.exitFile) else { return nil }
        return Int(text.trimming(" \n"))
    }

    /// The last non-empty line the VMM printed (its error message when it failed), without "vireo: ".
    static func lastMessage(_ paths: VMPaths) -> String? {
        guard let text = ProcessProbe.readSmallFile(paths.vmmLog, limit: 1 << 20) else { return nil }
        guard let line = text.split(separator: "\n").last(where: { !String($0).trimming(" ").isEmpty }) else { return nil }
        var message = String(line)
        if message.hasPrefix("vireo: ") { message.removeFirst("vireo: ".count) }
        return String(message.prefix(500))
    }
}

/// How the daemon confines one run of a VM's VMM beyond the definition's own settings.
struct VMMConfinement: Sendable, Equatable {
    /// The per-VM uid (VMMPrivileges), nil when the definition names a user or the daemon is not root.
    var uid: uid_t?
    /// Jailed (JailSupport: the VM's choice, else on where the host can); nil: the definition's own.
    var jail: Bool?
}

extension String {
    /// Drops leading and trailing characters that are in `set`.
    func trimming(_ set: String) -> String {
        var result = Substring(self)
        while let first = result.first, set.contains(first) { result = result.dropFirst() }
        while let last = result.last, set.contains(last) { result = result.dropLast() }
        return String(result)
    }
}
