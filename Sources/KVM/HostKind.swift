#if canImport(Glibc)
import Glibc
#endif

/// What kind of virtualisation backs /dev/kvm on this host.
public enum HostKind: String, Sendable, CustomStringConvertible {
    /// Intel VT-x or AMD-V: guest kernel mode runs natively.
    case hardware
    /// KVM's PVM flavour on a host without hardware virtualisation: guest kernel mode is emulated.
    case pvm
    /// KVM exists but neither was recognised.
    case unknown
    /// No /dev/kvm at all.
    case none

    public var description: String {
        switch self {
        case .hardware: return "hardware virtualisation (vmx/svm)"
        case .pvm: return "PVM (no hardware virtualisation; guest kernel mode emulated)"
        case .unknown: return "KVM of unknown kind"
        case .none: return "no KVM"
        }
    }

    /// Detects the host kind from /sys/module and /proc/cpuinfo (never assumed).
    public static func detect() -> HostKind {
        guard access("/dev/kvm", F_OK) == 0 else { return .none }
        if access("/sys/module/kvm_pvm", F_OK) == 0 { return .pvm }
        if access("/sys/module/kvm_intel", F_OK) == 0 || access("/sys/module/kvm_amd", F_OK) == 0 { return .hardware }
        if cpuinfoHasVirtualisationFlag() { return .hardware }
        return .unknown
    }

    private static func cpuinfoHasVirtualisationFlag() -> Bool {
        guard let file = fopen("/proc/cpuinfo", "r") else { return false }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>? = nil
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0 {
            guard let line else { continue }
            let text = String(cString: line)
            if text.hasPrefix("flags") {
                let flags = text.split(separator: " ")
                return flags.contains("vmx") || flags.contains("svm")
            }
        }
        return false
    }
}
