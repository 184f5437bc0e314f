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

    /// The spec's JSON text, as the VMM reads it.
    func specText(_ spec: VMSpec) throws(APIError) -> String {
        do {
            return try spec.jsonText()
        } catch {
            throw .internal("cannot encode the VMM spec: \(error)")
        }
    }

    /// Writes the spec the VMM reads (`run --spec FILE`) into the VM's directory, which only the
    /// daemon writes: a fresh file (never through a planted link), readable by the daemon's user alone.
    func writeSpec(_ spec: VMSpec, paths: VMPaths) throws(APIError) {
        try writeSpecText(specText(spec), paths: paths)
    }

    /// Writes spec text `specText` made, as `writeSpec` does.
    func writeSpecText(_ text: String, paths: VMPaths) throws(APIError) {
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

        var inherited: [(from: Int32, to: Int32)] = [(lockFD, VMLock.inheritedFD)]
        if let heldFD { inherited.append((heldFD, VMLock.inheritedFD + 1)) }
        let pid: pid_t
        do {
            pid = try ShimSpawn.spawn(argv, log: paths.vmmLog, inherited: inherited)
        } catch {
            throw .internal("cannot start the VMM for '\(definition.name)': \(error.message)")
        }
        return pid
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
