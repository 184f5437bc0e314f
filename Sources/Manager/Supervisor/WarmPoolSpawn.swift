/// Starts one warm-pool member as VMMLauncher starts a VMM (ShimSpawn): the shim in a new session,
/// signals at their defaults, stdin /dev/null, stdout and stderr to the slot's `vmm.log`, no
/// descriptor of the daemon's but the member's end of its socket, which becomes descriptor 3.
enum WarmPoolSpawn {
    static func spawn(slot: String, executable: String, socket: Int32) throws(APIError) -> Int32 {
        let argv = ["vireo-pool-shim", "-c", WarmPool.shimScript, "vireo-pool-shim", slot, executable, "pool"]
        return try ShimSpawn.spawn(argv, log: slot + "/vmm.log", inherited: [(socket, 3)])
    }
}
