import Foundation

/// Least privilege for the container's VMM, as the daemon gives its VMs: `vireo run --jail` (its own
/// mount, PID, IPC, UTS and network namespaces, pivot_root into an empty directory, no capabilities)
/// as a uid of its own from the per-VM range 0x7E560000–0x7E56FFFF, which needs no account and is
/// held by no other process. `VIREO_SHIM_JAIL=0` in the shim's environment (containerd's) turns it
/// off: the VMM then runs as root unjailed.
enum VMMIsolation {
    static let perVMRange: ClosedRange<UInt32> = 0x7E56_0000...0x7E56_FFFF

    /// `vireo run` options: `--jail --uid N --gid N`, or none when turned off.
    static func runOptions() throws -> [String] {
        if ProcessInfo.processInfo.environment["VIREO_SHIM_JAIL"] == "0" { return [] }
        let uid = try freeUID()
        return ["--jail", "--uid", String(uid), "--gid", String(uid)]
    }

    /// A uid of the range no process runs as, starting from one derived from this shim's pid (pids
    /// are unique, so shims starting together start apart).
    private static func freeUID() throws -> UInt32 {
        let used = uidsInUse()
        let count = UInt32(perVMRange.count)
        let start = UInt32(getpid()) % count
        for step in 0..<count {
            let uid = perVMRange.lowerBound + (start + step) % count
            if !used.contains(uid) { return uid }
        }
        throw ShimError(ShimError.internal, "vireo: no free per-VM uid left in \(perVMRange)")
    }

    private static func uidsInUse() -> Set<UInt32> {
        var used: Set<UInt32> = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where Int32(entry) != nil {
            guard let status = try? String(contentsOfFile: "/proc/\(entry)/status", encoding: .utf8),
                  let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") }) else { continue }
            for field in line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst() {
                if let uid = UInt32(field), perVMRange.contains(uid) { used.insert(uid) }
            }
        }
        return used
    }
}
