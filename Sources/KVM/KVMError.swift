#if canImport(Glibc)
import Glibc
#endif

/// A failure of the KVM layer, naming the operation and the errno behind it.
public enum KVMError: Error, Equatable, CustomStringConvertible {
    /// An ioctl failed: its name and errno.
    case ioctl(String, errno: Int32)
    /// Opening /dev/kvm (or another path) failed.
    case open(path: String, errno: Int32)
    /// The kernel speaks another KVM API version.
    case apiVersion(Int32)
    /// A capability Vireo needs is absent.
    case missingCapability(String)
    /// mmap of the vCPU's kvm_run area failed.
    case mapRun(errno: Int32)

    public var description: String {
        switch self {
        case let .ioctl(name, errno):
            return "\(name) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case let .open(path, errno):
            if errno == ENOENT {
                return "\(path) does not exist: this host has no KVM (load kvm_intel/kvm_amd, or enable nested virtualisation)"
            }
            if errno == EACCES || errno == EPERM {
                return "no permission to open \(path): run as root or add your user to the 'kvm' group"
            }
            return "cannot open \(path): \(String(cString: strerror(errno)))"
        case let .apiVersion(version):
            return "KVM API version \(version) is not supported (need 12)"
        case let .missingCapability(name):
            return "KVM lacks a capability Vireo needs: \(name)"
        case let .mapRun(errno):
            return "mmap of the vCPU run area failed: \(String(cString: strerror(errno)))"
        }
    }
}

/// Turns a CKVM `-errno` result into a thrown KVMError naming the ioctl.
@inline(__always)
func check(_ result: Int32, _ name: StaticString) throws(KVMError) -> Int32 {
    if result < 0 { throw KVMError.ioctl("\(name)", errno: -result) }
    return result
}
