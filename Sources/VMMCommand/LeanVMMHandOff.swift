#if canImport(Glibc)
import Glibc
#endif

/// `vireo run` runs its VM in `vireo-vmm` when that sits next to `vireo` (as `swift build` puts it):
/// the same arguments, parsed the same way (VMMArgumentsTests), but a process without the manager's
/// libraries, ArgumentParser or Foundation mapped: the lean VMM is what users' VMs run in.
enum LeanVMMHandOff {
    /// Replaces this process with the sibling `vireo-vmm`; returns only when there is none or exec failed.
    static func execIfPresent() {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return }
        let own = String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = own.lastIndex(of: "/") else { return }
        let sibling = String(own[..<slash]) + "/vireo-vmm"
        guard access(sibling, X_OK) == 0 else { return }
        let arguments = ["vireo-vmm"] + CommandLine.arguments.dropFirst()
        var pointers = arguments.map { strdup($0) } + [nil]
        execv(sibling, &pointers)
        for pointer in pointers { free(pointer) }  // exec failed: run in this process, as before
    }
}
