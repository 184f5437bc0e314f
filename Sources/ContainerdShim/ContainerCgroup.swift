import ContainerdShimAPI
import Foundation

/// The container's cgroup: every process of its VM (`vireo run`, the VMM) joins it before anything
/// runs, so Update limits and Stats measures the VM's whole host-side cost. cgroup v2 when the unified
/// hierarchy offers cpu and memory; otherwise one cgroup per v1 hierarchy (cpu, cpuacct, memory, pids),
/// as runc does. The path is the spec's `linux.cgroupsPath` (`ctr`: `/NAMESPACE/ID`) below each
/// hierarchy's mount; a relative or systemd-style path (`slice:prefix:name`) falls back to
/// `/vireo-shim/ID`.
struct ContainerCgroup {
    /// v2: one directory; v1: controller name → directory.
    let unified: String?
    /// The cgroup2 mount `unified` is below.
    let unifiedMount: String?
    let legacy: [String: String]

    /// Every directory, for joining and removal.
    var directories: [String] { unified.map { [$0] } ?? Array(Set(legacy.values)).sorted() }

    /// Finds the hierarchies (nothing is created yet); nil when this host has no usable cgroup.
    static func locate(cgroupsPath: String?, id: String) -> ContainerCgroup? {
        let relative = validPath(cgroupsPath) ?? "/vireo-shim/\(id)"
        var cgroup2: String?
        var legacy: [String: String] = [:]
        let mounts = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        for line in mounts.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 4 else { continue }
            let point = String(fields[1])
            if fields[2] == "cgroup2" {
                let controllers = (try? String(contentsOfFile: point + "/cgroup.controllers", encoding: .utf8)) ?? ""
                let offered = Set(controllers.split(whereSeparator: { $0 == " " || $0 == "\n" }))
                if offered.contains("cpu") && offered.contains("memory") { cgroup2 = point }
            } else if fields[2] == "cgroup" {
                for option in fields[3].split(separator: ",") where ["cpu", "cpuacct", "memory", "pids"].contains(option) {
                    legacy[String(option)] = point + relative
                }
            }
        }
        if let cgroup2 { return ContainerCgroup(unified: cgroup2 + relative, unifiedMount: cgroup2, legacy: [:]) }
        guard legacy["memory"] != nil || legacy["cpu"] != nil else { return nil }
        return ContainerCgroup(unified: nil, unifiedMount: nil, legacy: legacy)
    }

    /// An absolute path of plain components (no `.`/`..`), else nil.
    private static func validPath(_ path: String?) -> String? {
        guard let path, path.hasPrefix("/") else { return nil }
        let components = path.split(separator: "/")
        guard !components.isEmpty, components.count <= 32,
              components.allSatisfy({ $0 != "." && $0 != ".." && !$0.contains(":") }) else { return nil }
        return "/" + components.joined(separator: "/")
    }

    /// Creates the directories (v2: from the mount down, each level enables cpu, memory and pids
    /// for its children, which the "no internal processes" rule allows below the root only for
    /// cgroups without processes, as these are).
    func create() throws {
        if let unified, let unifiedMount {
            var path = unifiedMount
            for component in unified.dropFirst(unifiedMount.count).split(separator: "/") {
                _ = ContainerCgroup.write("+cpu +memory +pids", to: path + "/cgroup.subtree_control")
                path += "/" + component
                if mkdir(path, 0o755) != 0 && errno != EEXIST {
                    throw ShimError(ShimError.internal, "vireo: cannot create the cgroup \(path): \(String(cString: strerror(errno)))")
                }
            }
            return
        }
        for directory in directories {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
    }

    /// The cgroup.procs files a new process writes `0` to, to join.
    var procsFiles: [String] { directories.map { $0 + "/cgroup.procs" } }

    /// Removes the directories, waiting (bounded, 5 s) for the VM's last processes to go.
    func remove() {
        for directory in directories {
            for _ in 0..<50 {
                if rmdir(directory) == 0 || errno == ENOENT { break }
                usleep(100_000)
            }
        }
    }

    // MARK: Update

    /// Applies `linux.resources` (runtime-spec JSON, as containerd sends it in UpdateTaskRequest):
    /// cpu shares/quota/period and the memory limit. The memory limit caps the VM's host-side memory
    /// (the VMM's guest RAM as it touches it, plus vireo's own); the guest's RAM size stays as it was
    /// booted, so a limit below it makes the VM's host processes reclaim or be OOM-killed.
    /// Refuses a memory limit below `minimumMemory` (the guest's RAM plus 32 MiB for the VMM, as
    /// `vireo run --memory-max` does): the guest's RAM cannot shrink, so such a limit would only get
    /// the VMM OOM-killed.
    func update(resourcesJSON: [UInt8], minimumMemory: Int64) throws {
        struct CPU: Decodable { var shares: UInt64?; var quota: Int64?; var period: UInt64? }
        struct Memory: Decodable { var limit: Int64?; var swap: Int64? }
        struct Resources: Decodable { var cpu: CPU?; var memory: Memory? }
        guard resourcesJSON.count <= 1 << 16 else { throw ShimError(ShimError.invalidArgument, "vireo: Update's resources are over 64 KiB") }
        let resources: Resources
        do { resources = try JSONDecoder().decode(Resources.self, from: Data(resourcesJSON)) } catch {
            throw ShimError(ShimError.invalidArgument, "vireo: Update's resources are not runtime-spec LinuxResources JSON: \(error)")
        }
        var writes: [(file: String, value: String)] = []
        if let limit = resources.memory?.limit, limit > 0, limit < minimumMemory {
            throw ShimError(ShimError.invalidArgument, "vireo: memory limit \(limit) is below the VM's RAM + 32 MiB for the VMM (\(minimumMemory)); a VM's RAM cannot shrink")
        }
        if let limit = resources.memory?.limit, limit != 0 {
            if let unified { writes.append((unified + "/memory.max", limit < 0 ? "max" : String(limit))) }
            else if let memory = legacy["memory"] { writes.append((memory + "/memory.limit_in_bytes", String(limit))) }
        }
        if let cpu = resources.cpu {
            if let shares = cpu.shares, shares > 0 {
                // runc's conversion: shares 2…262144 → weight 1…10000.
                let weight = 1 + ((min(max(shares, 2), 262_144) - 2) * 9999) / 262_142
                if let unified { writes.append((unified + "/cpu.weight", String(weight))) }
                else if let directory = legacy["cpu"] { writes.append((directory + "/cpu.shares", String(shares))) }
            }
            if cpu.quota != nil || cpu.period != nil {
                let period = cpu.period ?? 100_000
                let quota = cpu.quota ?? -1
                if let unified { writes.append((unified + "/cpu.max", "\(quota < 0 ? "max" : String(quota)) \(period)")) }
                else if let directory = legacy["cpu"] {
                    writes.append((directory + "/cpu.cfs_period_us", String(period)))
                    writes.append((directory + "/cpu.cfs_quota_us", String(quota)))
                }
            }
        }
        for (file, value) in writes {
            if let failure = ContainerCgroup.write(value, to: file) {
                throw ShimError(ShimError.invalidArgument, "vireo: cannot set \(file) to \(value): \(failure)")
            }
        }
    }

    // MARK: Stats

    /// io.containerd.cgroups.v2.Metrics for the cgroup (v1 hierarchies' files mapped onto v2's fields;
    /// "no limit" is UInt64.max, as containerd's cgroups package reports it).
    func metrics() -> Io_Containerd_Cgroups_V2_Metrics {
        var metrics = Io_Containerd_Cgroups_V2_Metrics()
        if let unified {
            let cpu = ContainerCgroup.keyed(unified + "/cpu.stat")
            metrics.cpu = .with {
                $0.usageUsec = cpu["usage_usec"] ?? 0
                $0.userUsec = cpu["user_usec"] ?? 0
                $0.systemUsec = cpu["system_usec"] ?? 0
                $0.nrPeriods = cpu["nr_periods"] ?? 0
                $0.nrThrottled = cpu["nr_throttled"] ?? 0
                $0.throttledUsec = cpu["throttled_usec"] ?? 0
            }
            let memory = ContainerCgroup.keyed(unified + "/memory.stat")
            metrics.memory = .with {
                $0.usage = ContainerCgroup.number(unified + "/memory.current") ?? 0
                $0.usageLimit = ContainerCgroup.number(unified + "/memory.max") ?? .max
                $0.swapUsage = ContainerCgroup.number(unified + "/memory.swap.current") ?? 0
                $0.swapLimit = ContainerCgroup.number(unified + "/memory.swap.max") ?? .max
                $0.anon = memory["anon"] ?? 0
                $0.file = memory["file"] ?? 0
            }
            metrics.pids = .with {
                $0.current = ContainerCgroup.number(unified + "/pids.current") ?? 0
                $0.limit = ContainerCgroup.number(unified + "/pids.max") ?? 0
            }
            return metrics
        }
        if let directory = legacy["cpuacct"] ?? legacy["cpu"] {
            let ticks = ContainerCgroup.keyed(directory + "/cpuacct.stat")  // USER_HZ (100) ticks
            let throttling = legacy["cpu"].map { ContainerCgroup.keyed($0 + "/cpu.stat") } ?? [:]
            metrics.cpu = .with {
                $0.usageUsec = (ContainerCgroup.number(directory + "/cpuacct.usage") ?? 0) / 1000
                $0.userUsec = (ticks["user"] ?? 0) * 10_000
                $0.systemUsec = (ticks["system"] ?? 0) * 10_000
                $0.nrPeriods = throttling["nr_periods"] ?? 0
                $0.nrThrottled = throttling["nr_throttled"] ?? 0
                $0.throttledUsec = (throttling["throttled_time"] ?? 0) / 1000
            }
        }
        if let directory = legacy["memory"] {
            let stat = ContainerCgroup.keyed(directory + "/memory.stat")
            let limit = ContainerCgroup.number(directory + "/memory.limit_in_bytes") ?? .max
            metrics.memory = .with {
                $0.usage = ContainerCgroup.number(directory + "/memory.usage_in_bytes") ?? 0
                // v1 writes "no limit" as the largest page-aligned value (0x7FFFFFFFFFFFF000).
                $0.usageLimit = limit >= 0x7FFF_FFFF_FFFF_F000 ? .max : limit
                $0.anon = stat["rss"] ?? 0
                $0.file = stat["cache"] ?? 0
                $0.swapLimit = .max
            }
        }
        if let directory = legacy["pids"] {
            metrics.pids = .with {
                $0.current = ContainerCgroup.number(directory + "/pids.current") ?? 0
                $0.limit = ContainerCgroup.number(directory + "/pids.max") ?? 0
            }
        }
        return metrics
    }

    /// A file holding one number ("max": nil).
    private static func number(_ path: String) -> UInt64? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// A "key value" per line file (cpu.stat, memory.stat).
    private static func keyed(_ path: String) -> [String: UInt64] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [:] }
        var values: [String: UInt64] = [:]
        for line in text.split(separator: "\n").prefix(256) {
            let fields = line.split(separator: " ")
            if fields.count == 2, let value = UInt64(fields[1]) { values[String(fields[0])] = value }
        }
        return values
    }

    /// Writes a control file; nil on success, else strerror.
    private static func write(_ value: String, to path: String) -> String? {
        let fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return String(cString: strerror(errno)) }
        defer { close(fd) }
        let bytes = Array(value.utf8)
        return Glibc.write(fd, bytes, bytes.count) == bytes.count ? nil : String(cString: strerror(errno))
    }
}
