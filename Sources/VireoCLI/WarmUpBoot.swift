import Foundation
import Images
import VMMCommand

/// Makes a warm-start snapshot: boots the guest kernel with the image init in warm mode and both
/// disks empty, waits for the init's "vireo-init: ready" on the console, then pauses the VM and
/// snapshots it through the VMM's control socket, and ends it. The console and the VMM's stderr go
/// to a log file; the caller commits the snapshot into the cache.
enum WarmUpBoot {
    static let readyLine = "vireo-init: ready"
    /// The kernel argument that puts the init in warm mode (passed to init as an environment variable).
    static let warmArgument = "vireo_warm=1"

    /// Boots and writes `staging/snapshot`; throws with the log's path when anything fails.
    static func run(staging: String, kernel: String, initrd: String, cmdline: String, spareDisks: Int = 0, options: [String], log: String) throws {
        let empty = [staging + "/root.empty", staging + "/config.empty"]
        for path in empty {
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw ImageError("cannot create \(path): \(String(cString: strerror(errno)))") }
            close(fd)
        }
        let api = staging + "/api.sock"
        let slots = try SpareDisks.make(count: spareDisks, in: staging)
        let arguments = ["run", "--kernel", kernel, "--initrd", initrd, "--cmdline", cmdline + " " + warmArgument,
                         "--disk", "\(empty[0]),id=vireo-root", "--disk", "\(empty[1]),id=vireo-config"]
            + slots + [
                         "--vsock", "cid=3,socket=\(staging)/v.sock", "--api-socket", api, "--no-stdin"] + options
        let logFD = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard logFD >= 0 else { throw ImageError("cannot create \(log): \(String(cString: strerror(errno)))") }
        defer { close(logFD) }
        var pipeFDs: [Int32] = [-1, -1]
        guard pipe(&pipeFDs) == 0 else { throw ImageError("pipe: \(String(cString: strerror(errno)))") }
        for fd in pipeFDs { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        defer { close(pipeFDs[0]) }
        let pid: pid_t
        do {
            pid = try spawn(arguments, stdout: pipeFDs[1], stderr: logFD)
        } catch {
            close(pipeFDs[1])
            throw error
        }
        close(pipeFDs[1])
        defer {
            kill(pid, SIGKILL)  // the snapshot is on disk (fsynced) before its reply came
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        try waitForReady(pipeFDs[0], copyTo: logFD, log: log)
        try control(api, "pause", log: log)
        try control(api, "snapshot \(staging)/snapshot", log: log)
        // Only the snapshot stays: the empty disks and sockets were the warm-up VM's.
        for path in empty + [api, staging + "/v.sock"] + (0..<spareDisks).map({ "\(staging)/slot-\($0).empty" }) { unlink(path) }
    }

    /// Reads the console until the ready line (copying it to the log); at most 10 minutes.
    private static func waitForReady(_ fd: Int32, copyTo logFD: Int32, log: String) throws {
        let deadline = Date().addingTimeInterval(600)
        var tail: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        // The whole line, newline included: the guest's tty must have sent all of it before the
        // snapshot, or the restored guest would send its rest ahead of the program's output.
        let markers = [Array((readyLine + "\r\n").utf8), Array((readyLine + "\n").utf8)]
        while true {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { throw ImageError("the guest did not get ready within 10 minutes (log: \(log))") }
            var wait = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&wait, 1, Int32(min(left, 1) * 1000))
            if ready < 0 && errno == EINTR { continue }
            guard ready >= 0 else { throw ImageError("poll: \(String(cString: strerror(errno)))") }
            if ready == 0 { continue }
            let count = read(fd, &buffer, buffer.count)
            guard count > 0 else { throw ImageError("the warm-up VM ended before the guest was ready (log: \(log))") }
            _ = buffer.withUnsafeBytes { write(logFD, $0.baseAddress, count) }
            tail += buffer[0..<count]
            if tail.count > 8192 { tail.removeFirst(tail.count - 8192) }
            if markers.contains(where: { contains(tail, $0) }) { return }
        }
    }

    private static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard haystack.count >= needle.count else { return false }
        for start in 0...(haystack.count - needle.count) where haystack[start..<start + needle.count].elementsEqual(needle) {
            return true
        }
        return false
    }

    /// One control-socket request; throws (naming the log) unless the reply says `"ok":true`.
    private static func control(_ socket: String, _ request: String, log: String) throws {
        do { try WarmControl.request(socket, request) } catch { throw ImageError("\(error) (log: \(log))") }
    }

    /// Starts `vireo ARGUMENTS` (this binary) with a parent-death signal and the given stdout/stderr.
    private static func spawn(_ arguments: [String], stdout: Int32, stderr: Int32) throws -> pid_t {
        let vireo = try VMMChild.ownExecutable()
        let candidates: [String] = ["/usr/bin/setpriv", "/bin/setpriv"]
        let setpriv = candidates.first { access($0, X_OK) == 0 }
        let command = (setpriv.map { [$0, "--pdeathsig", "KILL", "--", vireo] } ?? [vireo]) + arguments
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, stdout, 1)
        posix_spawn_file_actions_adddup2(&actions, stderr, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setpgroup(&attributes, 0)  // a terminal's ^C goes to us; we end the warm-up
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        let argv = command.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, command[0], &actions, &attributes, argv, environ)
        guard result == 0 else { throw ImageError("cannot start the warm-up VMM: \(String(cString: strerror(result)))") }
        return pid
    }
}
