import Devices
import X86
#if canImport(Glibc)
import Glibc
#endif

/// Reads user-supplied files (kernel, initrd) with errors that name the file and the problem.
enum FileLoader {
    static let maximumSize = 1 << 30

    /// Reads `path`; a FIFO, device or directory is refused at once (never opened blocking).
    /// `noFollow` also refuses a symbolic link (files inside a snapshot directory).
    static func read(_ path: String, what: String, noFollow: Bool = false) throws(VMMError) -> [UInt8] {
        let file = try open(path, what: what, noFollow: noFollow)
        var bytes = [UInt8](repeating: 0, count: file.size)
        let status = bytes.withUnsafeMutableBytes { file.read(at: 0, into: $0) }
        guard status == 0 else { throw .file(path: path, what: "cannot read \(what)", errno: status) }
        return bytes
    }

    /// Opens `path` for reading on demand (a kernel or initrd: the boot reads what it needs
    /// straight into guest RAM), with `read`'s checks.
    static func open(_ path: String, what: String, noFollow: Bool = false) throws(VMMError) -> OpenedFile {
        let fd: Int32
        switch CheckedOpen.open(path, flags: O_RDONLY, noFollow: noFollow, image: true) {
        case let .success(opened): fd = opened
        case let .failure(.system(error)): throw .file(path: path, what: "cannot open \(what)", errno: error)
        case let .failure(refusal): throw .invalidConfiguration("\(what) \(path) \(refusal)")
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let error = errno
            close(fd)
            throw .file(path: path, what: "cannot stat \(what)", errno: error)
        }
        let size = Int(info.st_size)
        guard size > 0, size <= maximumSize else {
            close(fd)
            throw .boot(size > 0 ? "\(what) \(path) is larger than 1 GiB" : "\(what) \(path) is empty")
        }
        return OpenedFile(fd: fd, size: size)
    }
}

/// A regular file opened by `FileLoader.open`, read with `pread` at any offset; closed when released.
/// Its size is the one `fstat` gave: a file that shrinks later reads as an EIO error, never past its end.
final class OpenedFile: KernelSource {
    let fd: Int32
    let size: Int

    init(fd: Int32, size: Int) {
        self.fd = fd
        self.size = size
    }

    deinit { close(fd) }

    func read(at offset: Int, into destination: UnsafeMutableRawBufferPointer) -> Int32 {
        guard offset >= 0, destination.count <= size - min(offset, size) else { return EIO }
        var done = 0
        while done < destination.count {
            let count = pread(fd, destination.baseAddress! + done, destination.count - done, off_t(offset + done))
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return count < 0 ? errno : EIO }
            done += count
        }
        return 0
    }
}
