import Devices
#if canImport(Glibc)
import Glibc
#endif

/// Reads user-supplied files (kernel, initrd) with errors that name the file and the problem.
enum FileLoader {
    static let maximumSize = 1 << 30

    /// Reads `path`; a FIFO, device or directory is refused at once (never opened blocking).
    /// `noFollow` also refuses a symbolic link (files inside a snapshot directory).
    static func read(_ path: String, what: String, noFollow: Bool = false) throws(VMMError) -> [UInt8] {
        let fd: Int32
        switch CheckedOpen.open(path, flags: O_RDONLY, noFollow: noFollow, image: true) {
        case let .success(opened): fd = opened
        case let .failure(.system(error)): throw .file(path: path, what: "cannot open \(what)", errno: error)
        case let .failure(refusal): throw .invalidConfiguration("\(what) \(path) \(refusal)")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .file(path: path, what: "cannot stat \(what)", errno: errno) }
        let size = Int(info.st_size)
        guard size > 0 else { throw .boot("\(what) \(path) is empty") }
        guard size <= maximumSize else { throw .boot("\(what) \(path) is larger than 1 GiB") }
        var bytes = [UInt8](repeating: 0, count: size)
        var offset = 0
        while offset < size {
            let count = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + offset, size - offset, off_t(offset)) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw .file(path: path, what: "cannot read \(what)", errno: count < 0 ? errno : EIO) }
            offset += count
        }
        return bytes
    }
}
