#if canImport(Glibc)
import Glibc
#endif

/// Starts a daemon child through `/bin/sh` (a VMM's shim or a warm-pool member's) the one way the
/// daemon starts them: a new session, signals at their defaults, stdin /dev/null, stdout and stderr
/// to a log file, and no descriptor of the daemon's but the ones handed over.
enum ShimSpawn {
    /// Spawns `/bin/sh` with `argv`; returns its pid. `inherited` maps daemon descriptors to the
    /// child's numbers (3 and up); everything above the highest is closed.
    static func spawn(_ argv: [String], log: String, inherited: [(from: Int32, to: Int32)]) throws(APIError) -> pid_t {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // A new session (POSIX_SPAWN_SETSID, 0x80 in glibc; not exported to Swift): no signal sent to
        // the daemon's process group or terminal reaches the VM.
        let setsid: Int32 = 0x80
        posix_spawnattr_setflags(&attributes, Int16(setsid | Int32(POSIX_SPAWN_SETSIGMASK) | Int32(POSIX_SPAWN_SETSIGDEF)))
        // The daemon ignores or blocks some signals (its lifecycle handlers); the child gets defaults.
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
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_NOFOLLOW, 0o640)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        for (from, to) in inherited { posix_spawn_file_actions_adddup2(&actions, from, to) }  // dup2 clears close-on-exec
        closeFrom((inherited.map(\.to).max() ?? 2) + 1, &actions)

        var pid: pid_t = 0
        let cArguments = argv.map { strdup($0) } + [nil]
        defer { for pointer in cArguments { free(pointer) } }
        let result = posix_spawn(&pid, "/bin/sh", &actions, &attributes, cArguments, environ)
        guard result == 0 else { throw .internal("posix_spawn: \(String(cString: strerror(result)))") }
        return pid
    }

    /// Keeps the daemon's descriptors (sockets, the database) out of the child, even any opened
    /// without O_CLOEXEC, through glibc's posix_spawn_file_actions_addclosefrom_np when present.
    private static func closeFrom(_ first: Int32, _ actions: inout posix_spawn_file_actions_t) {
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        // RTLD_DEFAULT is a null handle in glibc.
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return }
        _ = unsafeBitCast(symbol, to: CloseFrom.self)(&actions, first)
    }
}
