import KVM

/// Host-specific adjustments to the guest kernel command line.
public enum CommandLinePolicy {
    /// On PVM hosts guest XRSTOR is not emulated, so Linux must not use XSAVE: append `noxsave`
    /// unless the user already chose.
    public static func adapt(_ cmdline: String, host: HostKind, enabled: Bool) -> String {
        guard enabled, host == .pvm else { return cmdline }
        let words = cmdline.split(separator: " ")
        if words.contains(where: { $0 == "noxsave" || $0.hasPrefix("xsave") }) { return cmdline }
        return cmdline.isEmpty ? "noxsave" : cmdline + " noxsave"
    }
}
