#if canImport(Glibc)
import Glibc
#endif

/// Starts one warm-pool member as VMMLauncher starts a VMM: the shim in a new session, signals at
/// their defaults, stdin /dev/null, stdout and stderr to the slot's `vmm.log`, no descriptor of the
/// daemon's but the member's end of its socket, which becomes descriptor 3.
enum WarmPoolSpawn {
    static func spawn(slot: String, executable: String, socket: Int32) throws(APIError) -> Int32 {
        let argv = ["vireo-pool-shim", "-c", WarmPool.shimScript, "vireo-pool-shim", slot, executable, "pool"]
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        let setsid: Int32 = 0x80  // POSIX_SPAWN_SETSID (not exported to Swift)
        posix_spawnattr_setflags(&attributes, Int16(setsid | Int32(POSIX_SPAWN_SETSIGMASK) | Int32(POSIX_SPAWN_SETSIGDEF)))
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
        posix_spawn_file_actions_addopen(&actions, 1, slot + "/vmm.log", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_NOFOLLOW, 0o640)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawn_file_actions_adddup2(&actions, socket, 3)  // dup2 clears close-on-exec
        closeFrom(4, &actions)

        var pid: pid_t = 0
        let cArguments = argv.map { strdup($0) } + [nil]
        defer { for pointer in cArguments { free(pointer) } }
        let result = posix_spawn(&pid, "/bin/sh", &actions, &attributes, cArguments, environ)
        guard result == 0 else { throw .internal("posix_spawn: \(String(cString: strerror(result)))") }
        return pid
    }

    /// posix_spawn_file_actions_addclosefrom_np where glibc has it (as VMMLauncher).
    private static func closeFrom(_ first: Int32, _ actions: inout posix_spawn_file_actions_t) {
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return }
        _ = unsafeBitCast(symbol, to: CloseFrom.self)(&actions, first)
    }
}
