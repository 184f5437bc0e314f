internal import CVireoSystem
#if canImport(Glibc)
import Glibc
#endif

/// CPU lists in the kernel's format: `0,1`, `0-3`, `0-2,5`.
public enum CPUList {
    /// The CPUs in `text`, sorted and unique; nil when malformed.
    public static func parse(_ text: String) -> [Int]? {
        let trimmed = text.trimmingCharacters(in: " ").trimmingCharacters(in: "\n")
        guard !trimmed.isEmpty else { return nil }
        var cpus = Set<Int>()
        for part in trimmed.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(bounds.count),
                  bounds.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } }),
                  let low = Int(bounds[0]), let high = Int(bounds[bounds.count - 1]),
                  low <= high, high < 4096 else { return nil }
            for cpu in low...high { cpus.insert(cpu) }
        }
        return cpus.sorted()
    }

    /// `[0, 1, 2, 5]` → `0-2,5`.
    public static func format(_ cpus: [Int]) -> String {
        var parts: [String] = []
        var index = 0
        let sorted = Array(Set(cpus)).sorted()
        while index < sorted.count {
            var end = index
            while end + 1 < sorted.count && sorted[end + 1] == sorted[end] + 1 { end += 1 }
            parts.append(end == index ? "\(sorted[index])" : "\(sorted[index])-\(sorted[end])")
            index = end + 1
        }
        return parts.joined(separator: ",")
    }

    /// The host's online CPUs (`/sys/devices/system/cpu/online`, else sysconf).
    public static func online() -> [Int] {
        if let text = readSmallFile("/sys/devices/system/cpu/online"), let cpus = parse(text) { return cpus }
        return Array(0..<max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    /// The CPUs this process may run on (sched_getaffinity; cpusets restrict it).
    public static func allowed() -> [Int] {
        var cpus = [Int32](repeating: 0, count: 1024)
        let count = csys_get_affinity(0, &cpus, Int32(cpus.count))
        return count > 0 ? cpus[0..<Int(count)].map(Int.init) : online()
    }

    /// The CPUs thread `tid` may run on.
    public static func affinity(ofThread tid: Int32) -> [Int]? {
        var cpus = [Int32](repeating: 0, count: 1024)
        let count = csys_get_affinity(tid, &cpus, Int32(cpus.count))
        return count >= 0 ? cpus[0..<Int(count)].map(Int.init) : nil
    }
}

/// `--cpu-max QUOTA[/PERIOD]`: at most QUOTA of CPU time per PERIOD (cgroup v2 cpu.max, v1
/// cpu.cfs_quota_us / cpu.cfs_period_us). Values are microseconds, or carry `us`, `ms` or `s`.
public struct CPUMax: Equatable, Sendable, CustomStringConvertible {
    public var quotaMicroseconds: Int
    public var periodMicroseconds: Int

    /// The kernel's bounds: period 1 ms – 1 s, quota at least 1 ms.
    public static let periodRange = SpecLimits.cpuMaxPeriodMicros
    public static let minimumQuota = SpecLimits.cpuMaxQuotaMicros.lowerBound
    public static let defaultPeriod = SpecLimits.defaultCPUMaxPeriodMicros

    public init(quotaMicroseconds: Int, periodMicroseconds: Int = CPUMax.defaultPeriod) {
        self.quotaMicroseconds = quotaMicroseconds
        self.periodMicroseconds = periodMicroseconds
    }

    /// Parses `20ms/100ms`, `20000/100000`, `50ms` (period 100 ms); nil when malformed.
    public static func parse(_ text: String) -> CPUMax? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let quota = microseconds(parts[0]) else { return nil }
        let period = parts.count == 2 ? microseconds(parts[1]) : defaultPeriod
        guard let period else { return nil }
        return CPUMax(quotaMicroseconds: quota, periodMicroseconds: period)
    }

    private static func microseconds(_ text: Substring) -> Int? {
        let lower = text.lowercased()
        for (suffix, scale) in [("us", 1), ("ms", 1_000), ("s", 1_000_000), ("", 1)] where lower.hasSuffix(suffix) {
            let digits = lower.dropLast(suffix.count)
            guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(digits),
                  value <= 1_000_000_000 else { return nil }
            return value * scale
        }
        return nil
    }

    /// Nil when within the kernel's bounds, else what is wrong.
    public var problem: String? {
        guard CPUMax.periodRange.contains(periodMicroseconds) else {
            return "the period must be between 1ms and 1s (got \(periodMicroseconds)us)"
        }
        guard quotaMicroseconds >= CPUMax.minimumQuota else { return "the quota must be at least 1ms (got \(quotaMicroseconds)us)" }
        return nil
    }

    /// The fraction of one CPU this allows (quota / period).
    public var cpus: Double { Double(quotaMicroseconds) / Double(periodMicroseconds) }

    public var description: String { "\(quotaMicroseconds)us/\(periodMicroseconds)us" }
}

/// `--cpu-weight` and its cgroup v1 translation.
public enum CPUWeight {
    /// cgroup v2 cpu.weight bounds.
    public static let range = SpecLimits.cpuWeight

    /// cgroup v1 cpu.shares for a v2 weight, as systemd maps them: weight × 1024 / 100, clamped
    /// to the kernel's 2…262144 (so the default weight 100 is the default 1024 shares).
    public static func shares(forWeight weight: Int) -> Int {
        min(262_144, max(2, weight * 1024 / 100))
    }
}

/// Reads a small text file (proc, sys, cgroup files); nil when it cannot be read.
func readSmallFile(_ path: String, limit: Int = 1 << 20) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while bytes.count < limit {
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else { break }
        bytes += chunk[0..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Writes `text` to an existing file (cgroup control files); nil on success, else strerror.
func writeSmallFile(_ path: String, _ text: String) -> String? {
    let fd = open(path, O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { return String(cString: strerror(errno)) }
    defer { close(fd) }
    var line = text
    let written = line.withUTF8 { write(fd, $0.baseAddress, $0.count) }
    return written == text.utf8.count ? nil : String(cString: strerror(written < 0 ? errno : EIO))
}
