#if canImport(Glibc)
import Glibc
#endif

/// A cgroup hierarchy mounted on this host, from /proc/self/mountinfo.
public struct CgroupMount: Equatable, Sendable {
    /// 1 (a v1 hierarchy with its controllers) or 2 (the unified hierarchy).
    public var version: Int
    public var mountPoint: String
    /// The hierarchy path the mount shows at its mount point (not "/" inside some containers).
    public var root: String
    /// v1: the controllers bound to it (from the super options); v2: empty (see cgroup.controllers).
    public var controllers: Set<String>
    public var readOnly: Bool

    /// Parses mountinfo text into the cgroup mounts it lists.
    public static func parse(mountinfo: String) -> [CgroupMount] {
        var mounts: [CgroupMount] = []
        for line in mountinfo.split(separator: "\n") {
            let fields = line.split(separator: " ").map(String.init)
            guard let dash = fields.firstIndex(of: "-"), dash >= 6, fields.count > dash + 3 else { continue }
            let type = fields[dash + 1]
            guard type == "cgroup" || type == "cgroup2" else { continue }
            let mountOptions = fields[5].split(separator: ",")
            let superOptions = fields[dash + 3].split(separator: ",").map(String.init)
            let known: Set<String> = ["rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec", "nsdelegate",
                                      "memory_recursiveprot", "clone_children", "xattr", "favordynmods"]
            let controllers = type == "cgroup"
                ? Set(superOptions.filter { !known.contains($0) && !$0.hasPrefix("name=") && !$0.hasPrefix("release_agent=") })
                : []
            mounts.append(CgroupMount(version: type == "cgroup2" ? 2 : 1, mountPoint: unescape(fields[4]),
                                      root: unescape(fields[3]), controllers: controllers,
                                      readOnly: mountOptions.contains("ro")))
        }
        return mounts
    }

    /// mountinfo escapes space, tab, newline and backslash as octal.
    static func unescape(_ text: String) -> String {
        guard text.contains("\\") else { return text }
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "\\"), utf8.count >= 3,
               let value = UInt8(String(decoding: utf8.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(value)
                utf8 = utf8.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The directory of hierarchy path `path` under this mount, or nil when the mount does not show it.
    public func directory(for path: String) -> String? {
        let relative: String
        if root == "/" {
            relative = path
        } else if path == root {
            relative = "/"
        } else if path.hasPrefix(root + "/") {
            relative = String(path.dropFirst(root.count))
        } else {
            return nil
        }
        return relative == "/" ? mountPoint : mountPoint + relative
    }
}

/// This process's cgroup in each hierarchy, from /proc/self/cgroup.
public struct CgroupMembership: Equatable, Sendable {
    /// The unified (v2) path, if listed.
    public var unified: String?
    /// v1 controller → path.
    public var v1: [String: String]

    public static func parse(_ text: String) -> CgroupMembership {
        var membership = CgroupMembership(unified: nil, v1: [:])
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
            guard fields.count == 3 else { continue }
            if fields[0] == "0" && fields[1].isEmpty {
                membership.unified = fields[2]
            } else {
                for controller in fields[1].split(separator: ",") { membership.v1[String(controller)] = fields[2] }
            }
        }
        return membership
    }
}

/// Where one controller of one VM lives: a cgroup v2 directory or a v1 hierarchy's directory.
public struct CgroupPlacement: Equatable, Sendable {
    public var controller: String
    public var version: Int
    /// The cgroup that holds the VM directories (`<own cgroup>/vireo`).
    public var parent: String
    /// The VM's cgroup (`<parent>/<vm id>`).
    public var directory: String
}

/// Picks, creates, joins and removes a VM's cgroups: cgroup v2 where the unified hierarchy offers
/// the controller, else the controller's v1 hierarchy (hybrid hosts), per controller. The VM's
/// cgroup is `<this process's cgroup>/vireo/<vm id>` in each hierarchy used.
public struct CgroupManager: Sendable {
    public var mounts: [CgroupMount]
    public var membership: CgroupMembership
    /// Overrides for tests (VIREO_TEST_CGROUP_MOUNTINFO); nil reads /proc/self/mountinfo.
    public init(mountinfo: String? = nil, procCgroup: String? = nil) {
        let info = mountinfo ?? TestHooks.cgroupMountinfo ?? readSmallFile("/proc/self/mountinfo") ?? ""
        mounts = CgroupMount.parse(mountinfo: info)
        membership = CgroupMembership.parse(procCgroup ?? readSmallFile("/proc/self/cgroup") ?? "")
    }

    /// Where `controller` would go for VM `id`, or a one-line reason (naming the option) why it cannot.
    public func place(_ controller: String, vmID: String, option: String) -> Result<CgroupPlacement, VMMError> {
        var reasons: [String] = []
        if let unified = mounts.first(where: { $0.version == 2 }) {
            let own = membership.unified ?? "/"
            if let base = unified.directory(for: own) {
                let available = (readSmallFile(base + "/cgroup.controllers") ?? "").split(whereSeparator: \.isWhitespace)
                if !available.contains(Substring(controller)) {
                    reasons.append("cgroup v2 at \(unified.mountPoint) does not offer the \(controller) controller")
                } else if unified.readOnly || access(base, W_OK) != 0 {
                    reasons.append("cgroup v2 \(base) is not writable")
                } else {
                    return .success(CgroupPlacement(controller: controller, version: 2, parent: base + "/vireo",
                                                    directory: base + "/vireo/" + vmID))
                }
            } else {
                reasons.append("cgroup v2 at \(unified.mountPoint) does not show this process's cgroup")
            }
        } else {
            reasons.append("cgroup v2 is not mounted")
        }
        if let hierarchy = mounts.first(where: { $0.version == 1 && $0.controllers.contains(controller) }) {
            let own = membership.v1[controller] ?? "/"
            if let base = hierarchy.directory(for: own), !hierarchy.readOnly, access(base, W_OK) == 0 {
                return .success(CgroupPlacement(controller: controller, version: 1, parent: base + "/vireo",
                                                directory: base + "/vireo/" + vmID))
            }
            reasons.append("the cgroup v1 \(controller) hierarchy at \(hierarchy.mountPoint) is not writable")
        } else {
            reasons.append("no cgroup v1 \(controller) hierarchy is mounted")
        }
        return .failure(.invalidConfiguration("\(option) needs the cgroup \(controller) controller, but \(reasons.joined(separator: " and "))"))
    }
}

/// The control-file writes one VM's limits need, per placement.
struct CgroupSettings: Sendable {
    var cpuWeight: Int?
    var cpuMax: CPUMax?
    var memoryMax: UInt64?

    /// (file, value) pairs for a placement, in the order they must be written.
    func writes(for placement: CgroupPlacement) -> [(String, String)] {
        switch (placement.controller, placement.version) {
        case ("cpu", 2):
            var writes: [(String, String)] = []
            if let cpuWeight { writes.append(("cpu.weight", String(cpuWeight))) }
            if let cpuMax { writes.append(("cpu.max", "\(cpuMax.quotaMicroseconds) \(cpuMax.periodMicroseconds)")) }
            return writes
        case ("cpu", _):
            var writes: [(String, String)] = []
            if let cpuWeight { writes.append(("cpu.shares", String(CPUWeight.shares(forWeight: cpuWeight)))) }
            if let cpuMax {
                writes.append(("cpu.cfs_period_us", String(cpuMax.periodMicroseconds)))
                writes.append(("cpu.cfs_quota_us", String(cpuMax.quotaMicroseconds)))
            }
            return writes
        case ("memory", 2):
            return memoryMax.map { [("memory.max", String($0))] } ?? []
        case ("memory", _):
            return memoryMax.map { [("memory.limit_in_bytes", String($0))] } ?? []
        default:
            return []
        }
    }
}

/// A VM's cgroups once created: joined by the VMM, removed when the VM ends.
/// @unchecked Sendable: `created` is written by `create` and `remove` on the main thread of the one process that manages the cgroups (the supervisor, or the VMM before its other threads exist).
public final class VMCgroups: @unchecked Sendable {
    public let placements: [CgroupPlacement]
    let settings: CgroupSettings
    private var created: [String] = []

    init(placements: [CgroupPlacement], settings: CgroupSettings) {
        self.placements = placements
        self.settings = settings
    }

    /// Directories another process created (a warm-pool VMM forked ahead, SupervisionReport), for
    /// its supervisor to remove.
    init(adopting directories: [String]) {
        placements = []
        settings = CgroupSettings(cpuWeight: nil, cpuMax: nil, memoryMax: nil)
        created = directories
    }

    /// The distinct VM cgroup directories (v2 puts every controller in one).
    public var directories: [String] {
        var seen: [String] = []
        for placement in placements where !seen.contains(placement.directory) { seen.append(placement.directory) }
        return seen
    }

    /// Creates the directories, enables v2 controllers, writes the limits; removes what it made on failure.
    /// `sweeping`: first remove stale `vm-<pid>` siblings (sweepStale), which needs the host's PID
    /// namespace; a VMM forked ahead, in its own, leaves that to its supervisor.
    func create(sweeping: Bool = true) throws(VMMError) {
        do throws(VMMError) {
            for placement in placements {
                if mkdir(placement.parent, 0o755) != 0 && errno != EEXIST {
                    throw VMMError.file(path: placement.parent, what: "cannot create the cgroup", errno: errno)
                }
                if placement.version == 2 {
                    // A v2 child only gets a controller its parent enables for its children.
                    let grandparent = String(placement.parent.dropLast("/vireo".count))
                    for directory in [grandparent, placement.parent] {
                        if let error = enable(placement.controller, in: directory) {
                            throw VMMError.invalidConfiguration("cannot enable the cgroup v2 \(placement.controller) controller in \(directory): \(error)")
                        }
                    }
                }
                if !created.contains(placement.directory) {
                    if sweeping { VMCgroups.sweepStale(in: placement.parent) }
                    guard mkdir(placement.directory, 0o755) == 0 else {
                        throw VMMError.file(path: placement.directory, what: "cannot create the cgroup", errno: errno)
                    }
                    created.append(placement.directory)
                }
                for (file, value) in settings.writes(for: placement) {
                    if let error = writeSmallFile(placement.directory + "/" + file, value) {
                        throw VMMError.invalidConfiguration("cannot write \(value) to \(placement.directory)/\(file): \(error)")
                    }
                }
            }
        } catch {
            remove()
            throw error
        }
    }

    /// Removes `vm-<pid>` cgroups whose supervisor is gone (it was SIGKILLed and could not clean
    /// up). rmdir refuses a cgroup that still holds processes, so a live VM is never touched.
    static func sweepStale(in parent: String) { StaleVMDirectories.remove(in: parent) }

    private func enable(_ controller: String, in directory: String) -> String? {
        let current = readSmallFile(directory + "/cgroup.subtree_control") ?? ""
        if current.split(whereSeparator: \.isWhitespace).contains(Substring(controller)) { return nil }
        return writeSmallFile(directory + "/cgroup.subtree_control", "+" + controller)
    }

    /// Moves the calling process (all its threads) into every VM cgroup.
    func join() throws(VMMError) {
        for directory in directories {
            if let error = writeSmallFile(directory + "/cgroup.procs", "0") {
                throw VMMError.invalidConfiguration("cannot join the cgroup \(directory): \(error)")
            }
        }
    }

    /// Removes the VM cgroups (the VMM must have exited); retries briefly while the kernel lets go.
    func remove() {
        for directory in created.reversed() {
            var tries = 0
            while rmdir(directory) != 0 && errno == EBUSY && tries < 100 {
                usleep(10_000)
                tries += 1
            }
        }
        created = []
    }

    /// What each controller's files say now, for `-v` and the API (nil where unreadable, e.g. in the jail).
    func readBack() -> [(String, String)] {
        var values: [(String, String)] = []
        for placement in placements {
            for (file, _) in settings.writes(for: placement) {
                if let text = readSmallFile(placement.directory + "/" + file) {
                    values.append((file, text.trimmingCharacters(in: "\n")))
                }
            }
        }
        return values
    }
}
