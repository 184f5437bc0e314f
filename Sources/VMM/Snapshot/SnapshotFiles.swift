#if canImport(Glibc)
import Glibc
#endif

/// A snapshot handed over as open descriptors (a warm-pool VMM, `vireo serve --warm-pool`): the
/// daemon opened `state.bin` and `memory.bin` without following links, so the VMM needs no path.
/// `directory` only names the snapshot in messages.
public struct SnapshotFiles: Sendable {
    public let directory: String
    public let state: Int32
    public let memory: Int32

    public init(directory: String, state: Int32, memory: Int32) {
        self.directory = directory
        self.state = state
        self.memory = memory
    }

    /// Reads the whole state file from its descriptor: a regular file of at most 64 MiB.
    func readState() throws(SnapshotError) -> [UInt8] {
        let path = directory + "/" + SnapshotState.stateFile
        var info = stat()
        guard fstat(state, &info) == 0 else { throw .io("cannot stat \(path): \(String(cString: strerror(errno)))") }
        guard info.st_mode & S_IFMT == S_IFREG else { throw .io("\(path) is not a regular file") }
        let size = Int(info.st_size)
        guard size > 0, size <= 64 << 20 else { throw .io("\(path) has \(size) bytes") }
        var bytes = [UInt8](repeating: 0, count: size)
        var offset = 0
        while offset < size {
            let count = bytes.withUnsafeMutableBytes { pread(state, $0.baseAddress! + offset, size - offset, off_t(offset)) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw .io("cannot read \(path): \(String(cString: strerror(count < 0 ? errno : EIO)))") }
            offset += count
        }
        return bytes
    }
}
