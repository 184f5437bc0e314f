#if canImport(Glibc)
import Glibc
#endif

/// The daemon's file descriptor budget (issue 12, finding 2): the soft limit is raised to the hard
/// one, and API connections are capped well below it, so that idle clients can never leave the
/// daemon without descriptors for /proc, the store, logs and VMM sockets.
enum DescriptorLimit {
    /// Descriptors kept for everything but API connections.
    static let reserve = 256

    /// Raises RLIMIT_NOFILE's soft limit to its hard limit; returns the soft limit now in force.
    @discardableResult
    static func raise() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return Int(min(limit.rlim_cur, rlim_t(Int32.max)))
    }

    /// Connections served at once: half of what is left after the reserve, between 16 and 1024.
    static func maximumConnections(forLimit limit: Int) -> Int {
        min(1024, max(16, (limit - reserve) / 2))
    }
}
