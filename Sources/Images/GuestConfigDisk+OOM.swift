#if canImport(Glibc)
import Glibc
#endif

extension GuestConfigDisk {
    /// Whether the init marked the status with "oom" (after the status's NUL): the guest kernel's
    /// OOM killer killed a process during the run.
    public static func outOfMemory(at path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var header = [UInt8](repeating: 0, count: 12)
        guard pread(fd, &header, 12, 0) == 12 else { return false }
        let length = Int(header[8]) | Int(header[9]) << 8 | Int(header[10]) << 16 | Int(header[11]) << 24
        var block = [UInt8](repeating: 0, count: 32)
        guard pread(fd, &block, 32, off_t(statusOffset(recordsLength: length))) == 32,
              block.starts(with: Array("VIREOST1".utf8)),
              let end = block[8...].firstIndex(of: 0) else { return false }
        return block[(end + 1)...].starts(with: Array("oom\0".utf8))
    }
}
