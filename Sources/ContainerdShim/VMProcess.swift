import Foundation

/// The container's VM: `vireo run … --image LAYOUT -- ARGS` as a child, in its own process group,
/// with the container's FIFOs as stdin/stdout (the guest console carries the program's stdout and
/// stderr together) and the shim's stderr as its own. vireo restores the warm-start snapshot (or
/// boots), forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT to the program, stops the VM on a second signal,
/// removes its run directory, and exits with the program's status.
enum VMProcess {
    /// The `vireo` binary: $VIREO_BIN, else next to this shim, else on PATH.
    static func vireoBinary() -> String {
        if let path = ProcessInfo.processInfo.environment["VIREO_BIN"], !path.isEmpty { return path }
        if let own = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            let sibling = (own as NSString).deletingLastPathComponent + "/vireo"
            if access(sibling, X_OK) == 0 { return sibling }
        }
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory)/vireo"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return "vireo"
    }

    /// Starts the VM; returns vireo's pid. With `cgroupProcs`, it starts through /bin/sh, which
    /// joins those cgroups (`0` into each cgroup.procs) and then execs vireo: the VM's processes are
    /// in the container's cgroup before any of them runs.
    static func spawn(arguments: [String], cgroupProcs: [String] = [], stdin: Int32, stdout: Int32, stderr: Int32,
                      extraEnvironment: [String: String] = [:]) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        posix_spawn_file_actions_adddup2(&actions, stdout, 1)
        posix_spawn_file_actions_adddup2(&actions, stderr, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own process group: signals for the shim's group never reach the VM; a clean signal mask.
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK))
        var command = [vireoBinary()] + arguments
        var environment = ProcessInfo.processInfo.environment.merging(extraEnvironment) { $1 }
        if !cgroupProcs.isEmpty {
            let join = "set -f; for f in $VIREO_SHIM_CGROUP_PROCS; do echo 0 > \"$f\" || exit 125; done; unset VIREO_SHIM_CGROUP_PROCS; exec \"$@\""
            command = ["/bin/sh", "-c", join, "sh"] + command
            environment["VIREO_SHIM_CGROUP_PROCS"] = cgroupProcs.joined(separator: " ")
        }
        let argv = command.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawnp(&pid, command[0], &actions, &attributes, argv, envp)
        guard result == 0 else { throw ShimError(ShimError.internal, "cannot start \(command[0]): \(String(cString: strerror(result)))") }
        return pid
    }

    /// Waits for `pid`; its status as a shell reports it (128+N for a signal).
    static func wait(_ pid: pid_t) -> UInt32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return 255 }
        }
        let signal = status & 0x7f
        return UInt32(signal == 0 ? (status >> 8) & 0xff : 128 + signal)
    }

    /// Opens a container FIFO containerd made (empty path: /dev/null). Read ends open non-blocking
    /// (no writer may be there yet) and are switched back to blocking for the child.
    static func open(fifo path: String, write: Bool) throws -> Int32 {
        if path.hasPrefix("file://") {
            // `ctr run --log-uri file:///PATH`: the output goes to that file (stdin reads nothing).
            guard write else { return try open(fifo: "", write: false) }
            let file = String(path.dropFirst(7))
            let fd = Glibc.open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o640)
            guard fd >= 0 else { throw ShimError(ShimError.internal, "open \(file): \(String(cString: strerror(errno)))") }
            return fd
        }
        guard !path.contains("://") else { throw ShimError(ShimError.invalidArgument, "vireo: stdio \(path) is not supported (FIFOs and file:// are)") }
        let target = path.isEmpty ? "/dev/null" : path
        let fd = Glibc.open(target, (write ? O_WRONLY : O_RDONLY | O_NONBLOCK) | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw ShimError(ShimError.internal, "open \(target): \(String(cString: strerror(errno)))") }
        if !write { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) }
        return fd
    }
}
