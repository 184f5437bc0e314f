import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Reads an image's JSON documents (index, manifests, configs) whole, but only regular files of a
/// bounded size, never through a final symlink and never blocking on a FIFO: the image is hostile.
enum SmallFile {
    /// 4 MiB: the largest index, manifest or config Vireo reads (real ones are a few KiB).
    static let limit = 4 << 20

    /// The file's bytes, or nil when it does not exist; a refusal for anything else.
    static func read(_ path: String, what: String) throws(ImageError) -> Data? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 && errno == ENOENT { return nil }
        guard fd >= 0 else { throw ImageError("cannot read \(what) (\(path)): \(SafeTree.error())") }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0, status.st_mode & S_IFMT == S_IFREG else {
            throw ImageError("\(what) (\(path)) is not a regular file; refusing it")
        }
        guard status.st_size <= limit else {
            throw ImageError("\(what) (\(path)) is \(status.st_size) bytes, more than the \(limit >> 20) MiB allowed; refusing it")
        }
        var bytes = [UInt8](repeating: 0, count: Int(status.st_size) + 1)
        var used = 0
        while used < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + used, $0.count - used) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw ImageError("cannot read \(what) (\(path)): \(SafeTree.error())") }
            if n == 0 { break }
            used += n
        }
        guard used <= limit else { throw ImageError("\(what) (\(path)) grew past \(limit >> 20) MiB while read; refusing it") }
        return Data(bytes[0..<used])
    }
}
