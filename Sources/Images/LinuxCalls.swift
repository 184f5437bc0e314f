#if canImport(Glibc)
import Glibc
#endif

/// The two libc calls Glibc's Swift module does not export: `makedev` (a macro) and `fsetxattr`
/// (looked up once with dlsym rather than adding a C target for one function).
enum LinuxCalls {
    /// glibc's `makedev` encoding.
    static func makeDevice(major: UInt32, minor: UInt32) -> dev_t {
        let major = UInt64(major), minor = UInt64(minor)
        return dev_t(((major & 0xffff_f000) << 32) | ((major & 0xfff) << 8) | ((minor & 0xffff_ff00) << 12) | (minor & 0xff))
    }

    private typealias SetXattr = @convention(c) (Int32, UnsafePointer<CChar>, UnsafeRawPointer?, Int, Int32) -> Int32
    nonisolated(unsafe) private static let setXattrFunction: SetXattr? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "fsetxattr") else { return nil }
        return unsafeBitCast(symbol, to: SetXattr.self)
    }()

    /// `fsetxattr(fd, name, value, 0)`; ENOTSUP when libc lacks it.
    static func setXattr(_ fd: Int32, _ name: String, _ value: [UInt8]) -> Int32 {
        guard let function = setXattrFunction else { errno = ENOTSUP; return -1 }
        return value.withUnsafeBytes { bytes in name.withCString { function(fd, $0, bytes.baseAddress, bytes.count, 0) } }
    }
}
