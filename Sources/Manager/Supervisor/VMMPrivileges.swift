#if canImport(Glibc)
import Glibc
#endif

/// Least privilege by default (issue 12, finding 4): a root daemon starts the VMM of a VM without
/// `isolation.user` as a uid of its own from a reserved range, with no capabilities, instead of as
/// root. Like Firecracker's jailer (one `--uid` per microVM) and unlike libvirt's shared `qemu`
/// user: one uid per VM keeps VMMs apart without MAC labels, so an escaped VMM can neither signal
/// another VM's VMM nor write into its `vmm/` directory. The ids need no account (the VMM accepts
/// bare numbers only in this range), nothing on the host owns files as them, and images stay
/// root's: the VMM opens kernel, initrd, disks and snapshot state before it drops privileges
/// (IsolationPlan.enter runs after the Machine is built). `isolation.user: "root"` opts out.
enum VMMPrivileges {
    /// The VMM's UserIdentity.perVMRange (the two must stay equal; IntegrationTests check it):
    /// 65,536 ids in 0x70000000–0x7FFDFFFF, which systemd's UID map leaves unassigned.
    static let perVMRange: ClosedRange<uid_t> = 0x7E56_0000...0x7E56_FFFF

    /// The per-VM uid (gid the same number) the VMM of `definition` runs as: nil when it names a
    /// user itself or the daemon is not root. It reaches the VMM as the spec's typed
    /// `isolation.uid` (VMMConfinement), never as a user name.
    /// `inUse`: the ids other VMs' VMMs hold. `previous`: the id this VM had before, kept if free.
    /// `tracker`: a warm pool's RunningUIDTracker, whose background scans stand in for `runningIDs()`
    /// and the account look-ups; nil: both now.
    static func perVMUID(for definition: VMDefinition, inUse: Set<uid_t>, previous: uid_t?,
                         tracker: RunningUIDTracker? = nil) throws(APIError) -> uid_t? {
        guard definition.isolation.user == nil, geteuid() == 0 else { return nil }
        return try allocate(for: definition.name, inUse: inUse.union(tracker?.current() ?? runningIDs()), previous: previous,
                            unassigned: tracker.map { tracker in { tracker.isUnassigned($0) } } ?? isUnassigned)
    }

    /// A free id, starting at a point derived from the name so a VM tends to get the same one
    /// across daemon restarts (easier to read in `ps`); ids with an account or group are skipped.
    static func allocate(for name: String, inUse: Set<uid_t>, previous: uid_t?,
                         unassigned: (uid_t) -> Bool = isUnassigned) throws(APIError) -> uid_t {
        if let previous, perVMRange.contains(previous), !inUse.contains(previous), unassigned(previous) { return previous }
        let count = UInt32(perVMRange.count)
        let start = firstCandidate(for: name) - perVMRange.lowerBound
        for step in 0..<count {
            let uid = perVMRange.lowerBound + (start + step) % count
            if !inUse.contains(uid) && unassigned(uid) { return uid }
        }
        throw .startFailed("no free per-VM uid left in \(perVMRange.lowerBound)–\(perVMRange.upperBound)")
    }

    /// The ids of the range that processes run as now: VMMs adopted after a daemon restart, jailed
    /// VMMs (whose published pid is their root supervisor), anything else that took one.
    static func runningIDs() -> Set<uid_t> {
        var ids = Set<uid_t>()
        guard let proc = opendir("/proc") else { return ids }
        defer { closedir(proc) }
        while let entry = readdir(proc) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let pid = Int32(name), let identity = identity(ofProcess: pid), perVMRange.contains(identity.uid),
                  !identity.exited else { continue }
            ids.insert(identity.uid)
        }
        return ids
    }

    /// The id `allocate` tries first for a VM of this name (and takes unless it is in use or has an account).
    static func firstCandidate(for name: String) -> uid_t {
        perVMRange.lowerBound + fnv1a(name) % UInt32(perVMRange.count)
    }

    /// True when no account or group on the host has this id.
    static func isUnassigned(_ id: uid_t) -> Bool { getpwuid(id) == nil && getgrgid(id) == nil }

    private static func fnv1a(_ text: String) -> UInt32 {
        var hash: UInt32 = 2_166_136_261
        for byte in text.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        return hash
    }

    /// The real uid and gid of a process (/proc/PID/status), nil if it is gone; `exited`: a zombie
    /// (or dead) process waiting to be reaped, which uses its uid no more.
    static func identity(ofProcess pid: Int32) -> (uid: uid_t, gid: gid_t, exited: Bool)? {
        guard pid > 0, let text = ProcessProbe.readSmallFile("/proc/\(pid)/status") else { return nil }
        var uid: uid_t?, gid: gid_t?, exited = false
        for line in text.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            guard fields.count > 1 else { continue }
            if fields[0] == "Uid:" { uid = uid_t(fields[1]) }
            if fields[0] == "Gid:" { gid = gid_t(fields[1]) }
            if fields[0] == "State:" { exited = fields[1] == "Z" || fields[1] == "X" }
        }
        guard let uid, let gid else { return nil }
        return (uid, gid, exited)
    }
}
