import KVM

/// Host-specific adjustments to the guest kernel command line.
public enum CommandLinePolicy {
    /// On PVM hosts guest kernel mode is emulated, so append, each unless the user already chose:
    /// `noxsave` (guest XRSTOR is not emulated there), and for the project's guest kernel
    /// (guest/patches/vireo-emulated-options.patch) `vireo.noerms` (pages zeroed and copied with
    /// `rep stosq`/`movsq`: 8× fewer emulated iterations than the byte forms) and `vireo.nocx16` (no
    /// `cmpxchg16b`, which that emulator lacks; SLUB uses it). Kernels without the patch ignore the
    /// dotted names as unused module parameters.
    public static func adapt(_ cmdline: String, host: HostKind, enabled: Bool) -> String {
        guard enabled, host == .pvm else { return cmdline }
        let words = cmdline.split(separator: " ")
        var adapted = cmdline
        if !words.contains(where: { $0 == "noxsave" || $0.hasPrefix("xsave") }) { append("noxsave", to: &adapted) }
        for option in ["vireo.noerms", "vireo.nocx16"] where !words.contains(Substring(option)) {
            append(option, to: &adapted)
        }
        return adapted
    }

    private static func append(_ word: String, to cmdline: inout String) {
        cmdline = cmdline.isEmpty ? word : cmdline + " " + word
    }
}
