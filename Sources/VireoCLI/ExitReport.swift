import Foundation

/// For the containerd shim: with `VIREO_EXIT_REPORT=PATH` in its environment, `vireo run --image`
/// writes "STATUS" or "STATUS oom" (the guest kernel's OOM killer killed a process) to PATH when the
/// VM has ended, so the shim can publish containerd's TaskOOM. PATH is created new (O_EXCL, no links).
enum ExitReport {
    static func write(status: Int32, outOfMemory: Bool) {
        guard let path = ProcessInfo.processInfo.environment["VIREO_EXIT_REPORT"], !path.isEmpty else { return }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let text = Array("\(status)\(outOfMemory ? " oom" : "")\n".utf8)
        _ = text.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    }
}
