#if canImport(Glibc)
import Glibc
#endif

/// Writes `vireo: <message>` and a newline to stderr in one unbuffered write (safe from any
/// thread, and allowed by every seccomp role).
func reportOnStandardError(_ message: String) {
    var line = "vireo: \(message)\n"
    line.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}
