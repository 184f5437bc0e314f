import Foundation

/// Out-of-memory kills of a container, for containerd's TaskOOM event: the guest kernel's OOM killer
/// (vireo reports it in `VIREO_EXIT_REPORT`, from the init's mark on the config disk) and the host
/// cgroup's memory limit (the VMM killed: the `oom_kill` counter of the VM's memory cgroup).
enum OOMWatch {
    /// Where `vireo run` writes "STATUS[ oom]" when the VM ends.
    static func reportPath(bundle: String) -> String { bundle + "/vireo-exit" }

    /// Whether the report says the guest's OOM killer ran; the report is removed.
    static func guestOutOfMemory(bundle: String) -> Bool {
        let path = reportPath(bundle: bundle)
        defer { unlink(path) }
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 64)
        let got = read(fd, &bytes, bytes.count)
        guard got > 0 else { return false }
        return String(decoding: bytes[0..<got], as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" }).contains("oom")
    }

    /// The host kernel's OOM kills in the cgroup (v2 memory.events, v1 memory.oom_control `oom_kill`);
    /// 0 when unknown. Read before the cgroup is removed.
    static func hostKills(_ cgroup: ContainerCgroup?) -> Int {
        guard let cgroup else { return 0 }
        let file = cgroup.unified.map { $0 + "/memory.events" } ?? cgroup.legacy["memory"].map { $0 + "/memory.oom_control" }
        guard let file, let text = try? String(contentsOfFile: file, encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 2, fields[0] == "oom_kill" { return Int(fields[1]) ?? 0 }
        }
        return 0
    }
}
