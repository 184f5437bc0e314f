#if canImport(Glibc)
import Glibc
#endif

/// An error that stops a VM from being built or run, worded for the user.
public enum VMMError: Error, CustomStringConvertible {
    /// A user-supplied file problem (kernel, initrd, log).
    case file(path: String, what: String, errno: Int32)
    /// A configuration value out of range or inconsistent.
    case invalidConfiguration(String)
    /// The kernel or initrd could not be loaded.
    case boot(String)
    /// KVM refused something.
    case kvm(String)

    public var description: String {
        switch self {
        case let .file(path, what, errno):
            return "\(what) \(path): \(String(cString: strerror(errno)))"
        case let .invalidConfiguration(message), let .boot(message), let .kvm(message):
            return message
        }
    }
}
