import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The per-VM uids other processes run as (VMMPrivileges.runningIDs), kept up to date in the
/// background for a daemon with a warm pool, so that a pooled start does not read `/proc/PID/status`
/// of every process on the host (~2 ms) on its request's path.
///
/// The uids this daemon hands out are tracked exactly anyway (Supervisor.vmmUIDs); the scan adds
/// VMMs adopted after a restart and those of other daemons on the host. A scan is used while it is at
/// most `maximumAge` old; older (or none yet), the start scans itself, as without a pool. So a uid
/// taken by another daemon's VMM within the last `maximumAge` seconds can be missed: the same race two
/// daemons already had between one's scan and its VMM's uid switch, made up to `maximumAge` wider.
final class RunningUIDTracker: Sendable {
    /// Seconds a scan stays good for a start.
    static let maximumAge = 2.0
    /// Seconds after which the monitor's tick scans again in the background.
    static let refreshAge = 1.0

    private struct Scan {
        var ids: Set<uid_t>
        var at: Double
    }

    private let last = Mutex<Scan?>(nil)
    /// Per-VM uids found without an account or group (NSS look-ups: `/etc/passwd`, `/etc/group`,
    /// systemd's userdb), as of `at`; rechecked with every scan. At most the uids this daemon tried.
    private let unassigned = Mutex<(ids: Set<uid_t>, at: Double)>(([], 0))
    private let scanning = Atomic<Bool>(false)
    private let scan: @Sendable () -> Set<uid_t>

    init(scan: @escaping @Sendable () -> Set<uid_t> = VMMPrivileges.runningIDs) {
        self.scan = scan
    }

    /// The ids in use: the last scan if fresh enough, else a scan now.
    func current() -> Set<uid_t> {
        let now = Self.now()
        if let fresh = last.withLock({ $0 }), now - fresh.at <= Self.maximumAge { return fresh.ids }
        return rescan()
    }

    /// VMMPrivileges.isUnassigned, answered from the last check if at most `maximumAge` old.
    func isUnassigned(_ uid: uid_t) -> Bool {
        let now = Self.now()
        if unassigned.withLock({ now - $0.at <= Self.maximumAge && $0.ids.contains(uid) }) { return true }
        let free = VMMPrivileges.isUnassigned(uid)
        if free { unassigned.withLock { _ = $0.ids.insert(uid) } }
        return free
    }

    /// Scans on a background queue when the last scan is older than `refreshAge` (one at a time).
    func refreshInBackground() {
        let age = last.withLock { $0.map { Self.now() - $0.at } } ?? .infinity
        guard age > Self.refreshAge, !scanning.exchange(true, ordering: .acquiring) else { return }
        DispatchQueue.global(qos: .utility).async { [self] in
            _ = rescan()
            scanning.store(false, ordering: .releasing)
        }
    }

    /// Scans now and keeps the result (timed from the scan's start: conservative).
    @discardableResult
    func rescan() -> Set<uid_t> {
        let started = Self.now()
        let ids = scan()
        let known = unassigned.withLock { $0.ids }
        let stillFree = known.filter(VMMPrivileges.isUnassigned)
        unassigned.withLock { $0 = (stillFree, started) }
        last.withLock { previous in
            if previous == nil || previous!.at < started { previous = Scan(ids: ids, at: started) }
        }
        return ids
    }

    private static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
