#if canImport(Glibc)
import Glibc
#endif

/// `vm-<pid>` directories a supervisor leaves behind when it is SIGKILLed and cannot clean up:
/// its cgroups, its jail directory. Each is removed once no process has that pid any more; rmdir
/// refuses a cgroup that still holds processes or a directory that is not empty, so a live VM's
/// are never touched (and a reused pid only keeps a stale one a while longer).
enum StaleVMDirectories {
    static func remove(in parent: String) {
        guard let directory = opendir(parent) else { return }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard name.hasPrefix("vm-"), let pid = Int32(name.dropFirst(3)), pid > 0 else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { rmdir(parent + "/" + name) }
        }
    }
}
