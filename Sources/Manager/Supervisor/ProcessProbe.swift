#if canImport(Glibc)
import Glibc
#endif

/// What /proc says about a process: alive, its start time (to tell a reused pid apart), its RSS.
enum ProcessProbe {
    /// Field 22 of /proc/PID/stat (start time in clock ticks after boot); nil if gone or a zombie.
    static func startTime(of pid: Int32) -> Int64? {
        guard pid > 0, let text = readSmallFile("/proc/\(pid)/stat") else { return nil }
        // The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // fields[0] is the state (field 3); the start time is field 22, i.e. fields[19].
        guard fields.count > 19, fields[0] != "Z", fields[0] != "X" else { return nil }
        return Int64(fields[19])
    }

    /// True if `pid` runs and, when `startTime` is known, is the same process that was recorded.
    /// When /proc cannot tell (no descriptor left: EMFILE, ENFILE, ENOMEM) the answer is true:
    /// a VM wrongly thought dead gets a second VMM (issue 12, finding 2); one wrongly thought
    /// alive is only noticed a moment later.
    static func isAlive(_ pid: Int32, startTime recorded: Int64?) -> Bool {
        guard let current = startTime(of: pid) else { return livenessUnknown(pid) }
        return recorded == nil || recorded == current
    }

    /// True when /proc/PID cannot be looked at for lack of resources, not because it is gone.
    static func livenessUnknown(_ pid: Int32) -> Bool {
        guard pid > 0 else { return false }
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            close(fd)
            return false  // readable now: it was a zombie or gone in between
        }
        return errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == EAGAIN
    }

    /// Field 4 of /proc/PID/stat.
    static func parentPID(of pid: Int32) -> Int32? {
        guard pid > 0, let text = readSmallFile("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        return fields.count > 1 ? Int32(fields[1]) : nil
    }

    /// The process's working directory (the VMM runs in its VM's directory).
    static func workingDirectory(of pid: Int32) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/\(pid)/cwd", &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Resident set size in bytes (/proc/PID/statm, second field, in pages).
    static func residentBytes(of pid: Int32) -> Int64? {
        guard let text = readSmallFile("/proc/\(pid)/statm") else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int64(fields[1]) else { return nil }
        return pages * Int64(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// A whole small file as text (for /proc and our pid/exit files); nil if it cannot be read.
    static func readSmallFile(_ path: String, limit: Int = 65536) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while data.count < limit {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            data += chunk[0..<count]
        }
        return String(decoding: data, as: UTF8.self)
    }
}
