#if canImport(Glibc)
import Glibc
#endif

/// Whether this host lets the daemon jail VMMs (issue 12: the jail is on by default for daemon
/// VMs wherever it can be). A jail needs root with CAP_SYS_ADMIN and the kernel's mount, PID, IPC,
/// UTS and network namespaces; inside an unprivileged container or on a kernel without namespaces
/// the daemon says so once at start and runs VMs unjailed (still as their per-VM uid). A VM opts
/// out with `isolation.jail: false`; an explicit `true` is passed on and fails the start clearly
/// where the host cannot do it.
public enum JailSupport {
    /// nil when VMs can be jailed; otherwise why not (for the daemon's start-up log line).
    public static let unavailableReason: String? = probe()

    /// Where the VMM puts a jail without `--jail-dir` (IsolationPlan: `<parent>/vm-<its pid>`).
    static let defaultJailParent = "/run/vireo/jail"

    /// The jail setting a VM's VMM gets: its own choice, else the daemon's default.
    static func jail(for choice: Bool?) -> Bool { choice ?? (unavailableReason == nil) }

    static func probe() -> String? {
        guard geteuid() == 0 else { return "the daemon does not run as root" }
        for namespace in ["mnt", "pid", "ipc", "uts", "net"] where access("/proc/self/ns/\(namespace)", F_OK) != 0 {
            return "this kernel has no \(namespace) namespaces"
        }
        for limit in ["max_mnt_namespaces", "max_net_namespaces", "max_pid_namespaces"] {
            if let text = ProcessProbe.readSmallFile("/proc/sys/user/\(limit)"), text.trimming(" \n") == "0" {
                return "/proc/sys/user/\(limit) is 0"
            }
        }
        // CAP_SYS_ADMIN (bit 21) in the effective set: unshare, mount and pivot_root need it.
        let status = ProcessProbe.readSmallFile("/proc/self/status") ?? ""
        for line in status.split(separator: "\n") where line.hasPrefix("CapEff:") {
            let hex = line.dropFirst("CapEff:".count).drop(while: { $0 == "\t" || $0 == " " })
            guard let mask = UInt64(hex, radix: 16), mask & (1 << 21) != 0 else {
                return "the daemon lacks CAP_SYS_ADMIN (an unprivileged container?)"
            }
        }
        return nil
    }
}
