import Foundation

/// What /proc says about a running VMM, for the isolation tests.
enum HostProcess {
    static func read(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

    /// The host's online CPUs.
    static var onlineCPUs: [Int] {
        let text = read("/sys/devices/system/cpu/online") ?? "0"
        return text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",").flatMap { part -> [Int] in
            let bounds = part.split(separator: "-").compactMap { Int($0) }
            return bounds.count == 2 ? Array(bounds[0]...bounds[1]) : bounds
        }
    }

    /// This process's allowed CPUs as /proc/<pid>/status lists them.
    static var allowedCPUList: String? { status(getpid(), "Cpus_allowed_list") }

    /// The VMM process behind a `vireo run` pid: itself, or its child when a supervisor runs it.
    /// Waits until the VMM has its vCPU threads.
    static func vmm(of pid: Int32, timeout: Double = 20) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            for candidate in [pid] + children(of: pid) where !vcpuThreads(of: candidate).isEmpty { return candidate }
            usleep(20_000)
        }
        return nil
    }

    static func children(of pid: Int32) -> [Int32] {
        (read("/proc/\(pid)/task/\(pid)/children") ?? "").split(separator: " ").compactMap { Int32($0) }
    }

    /// Thread ids with their names.
    static func threads(of pid: Int32) -> [(tid: Int32, name: String)] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.compactMap { entry in
            guard let tid = Int32(entry), let name = read("/proc/\(pid)/task/\(entry)/comm") else { return nil }
            return (tid, name.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    static func vcpuThreads(of pid: Int32) -> [Int32] {
        threads(of: pid).filter { $0.name.hasPrefix("vireo-vcpu") }.map(\.tid)
    }

    /// A `Key:` line of /proc/<pid>/task/<tid>/status.
    static func status(_ pid: Int32, thread: Int32? = nil, _ key: String) -> String? {
        let path = thread.map { "/proc/\(pid)/task/\($0)/status" } ?? "/proc/\(pid)/status"
        guard let text = read(path) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
            return line.dropFirst(key.count + 1).trimmingCharacters(in: .whitespaces)
        }
        return nil
    }

    /// Nanoseconds every thread of `pid` has spent on a CPU (sum of /proc/<pid>/task/*/schedstat).
    static func cpuNanoseconds(_ pid: Int32) -> UInt64 {
        threads(of: pid).reduce(0) { total, thread in
            let first = read("/proc/\(pid)/task/\(thread.tid)/schedstat")?.split(separator: " ").first
            return total + (first.flatMap { UInt64($0) } ?? 0)
        }
    }

    static func namespace(_ pid: Int32, _ kind: String) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/\(kind)")
    }

    /// Stops a `vireo run` with SIGTERM (its supervisor then removes the VM's cgroups), SIGKILL after 10 s.
    static func stopGently(_ guest: GuestProcess) {
        guard guest.process.isRunning else { return }
        kill(guest.process.processIdentifier, SIGTERM)
        _ = guest.waitForExit(timeout: 10)
    }

    /// A directory `uid` can write (for the jail's console log and API socket).
    static func directory(_ name: String, owner uid: UInt32) throws -> String {
        let path = "/tmp/vireo-\(name)-\(getpid())"
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        chown(path, uid, uid)
        return path
    }
}
