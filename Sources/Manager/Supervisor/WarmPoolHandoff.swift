internal import CVireoSystem
#if canImport(Glibc)
import Glibc
#endif

/// Gives one VM to a warm-pool member (WarmPool): what a fresh VMM finds at its start, as
/// descriptors, so the member needs no path and no privilege to reach them.
///
/// The daemon opens, as root and without following any link: the VM's directory, its `vmm.log`
/// (truncated, as VMMLauncher's spawn does), and the snapshot's `state.bin` and `memory.bin`, walking
/// the (already resolved, link-free) snapshot directory from `/` one component at a time with
/// O_NOFOLLOW, each file checked to be a regular file with one link (BeneathRoots' rule for images).
/// The spec, exactly a fresh start's, travels in the message (after a `spec` line); a VM whose spec
/// exceeds `inlineSpecLimit` is started by a fresh VMM instead.
enum WarmPoolHandoff {
    /// The largest spec sent in the hand-off message: with the path (PATH_MAX) and the timeline it
    /// stays within what a member receives in one message (WarmPoolMember.receiveCapacity, 64 KiB).
    static let inlineSpecLimit = 48 << 10

    /// Hands `member` the VM; on success the member's pid is published as the VMM's (`vmm.pid`).
    /// A failure leaves nothing behind (the member is discarded by the caller).
    static func handOff(_ member: WarmPool.Member, paths: VMPaths, snapshot: String, lockFD: Int32,
                        heldFD: Int32?, spec: String, timeline: inout WarmPoolTimeline) throws(APIError) {
        var opened: [Int32] = []
        defer { for fd in opened { close(fd) } }
        func keep(_ fd: Int32, _ what: String) throws(APIError) {
            guard fd >= 0 else { throw .internal("warm pool: cannot open \(what): \(String(cString: strerror(errno)))") }
            opened.append(fd)
        }
        try keep(open(paths.directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), paths.directory)
        try keep(open(paths.vmmLog, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0o640), paths.vmmLog)
        let snapshotFD = try openDirectoryWithoutLinks(snapshot)
        defer { close(snapshotFD) }
        for name in ["state.bin", "memory.bin"] {
            let fd = openat(snapshotFD, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else {
                let reason = errno == ELOOP ? "is a symbolic link" : String(cString: strerror(errno))
                throw APIError(status: 422, code: "invalid_snapshot", message: "snapshot \(snapshot)/\(name) \(reason)")
            }
            opened.append(fd)
            var info = stat()
            guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_nlink == 1 else {
                throw APIError(status: 422, code: "invalid_snapshot",
                               message: "snapshot \(snapshot)/\(name) is not a regular file with a single link")
            }
        }
        // Where the member's shim records the exit: written before the hand-off, so that a VMM that
        // ends at once is still recorded in its VM's directory.
        try writeSmallFile(member.slot + "/vm-directory", paths.directory)
        for file in [paths.pidFile, paths.exitFile, paths.pidFile + ".tmp", paths.exitFile + ".tmp"] { unlink(file) }
        timeline.mark("daemon: snapshot files opened, exit record named")
        var descriptors = [opened[0], opened[1], lockFD, opened[2], opened[3]]
        if let heldFD { descriptors.append(heldFD) }
        do {
            // The directory's path too: the member's VMM, in a mount namespace of its own, enters it by path.
            try send(Array("vm 1\n\(paths.directory)\n\(timeline.lines)spec\n\(spec)".utf8), descriptors: descriptors, on: member.socket)
        } catch {
            unlink(member.slot + "/vm-directory")  // its end must not be recorded as this VM's
            throw error
        }
        // The VMM was just woken, often onto this CPU (the scheduler's wake-affine choice): let it
        // run now rather than after the pid file and the store's commit (~0.5 ms on a 2-CPU host).
        sched_yield()
        try writeSmallFile(paths.pidFile, "\(member.pid)\n")
    }

    /// O_PATH (Linux), not exported by Glibc's module (as ImageRoots).
    private static let openPath: Int32 = 0o10000000

    /// Opens an absolute directory path that must contain no symbolic link at all.
    static func openDirectoryWithoutLinks(_ path: String) throws(APIError) -> Int32 {
        var fd = open("/", openPath | O_DIRECTORY | O_CLOEXEC)
        for component in path.split(separator: "/") where !component.isEmpty {
            let next = openat(fd, String(component), openPath | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            let error = errno
            close(fd)
            guard next >= 0 else {
                throw APIError(status: 422, code: "invalid_snapshot",
                               message: "snapshot \(path): \(error == ENOTDIR || error == ELOOP ? "a component is a symbolic link or not a directory" : String(cString: strerror(error)))")
            }
            fd = next
        }
        return fd
    }

    /// One SOCK_SEQPACKET message with SCM_RIGHTS descriptors (the bounded helper of fd_passing.h).
    static func send(_ bytes: [UInt8], descriptors: [Int32], on socket: Int32) throws(APIError) {
        let sent = descriptors.withUnsafeBufferPointer { list in
            bytes.withUnsafeBytes { csys_send_fds(socket, $0.baseAddress, $0.count, list.baseAddress, Int32(list.count)) }
        }
        guard sent == bytes.count else {
            throw .internal("warm pool: the member did not take the VM: \(String(cString: strerror(Int32(-sent))))")
        }
    }

    /// Writes a small daemon-only file through a temporary name (never through a planted link).
    static func writeSmallFile(_ path: String, _ text: String) throws(APIError) {
        let temporary = path + ".tmp"
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .internal("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard written == bytes.count, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw .internal("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}
