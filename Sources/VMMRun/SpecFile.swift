import VMM
#if canImport(Glibc)
import Glibc
#endif

/// Reads `--spec FILE`: a regular file opened without following a link, at most 1 MiB of JSON.
enum SpecFile {
    static let maximumBytes = 1 << 20

    static func read(_ path: String) throws(UsageError) -> VMSpec {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            let error = errno
            throw UsageError("--spec \(path): \(error == ELOOP ? "is a symbolic link" : String(cString: strerror(error)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            throw UsageError("--spec \(path): not a regular file")
        }
        guard info.st_size <= maximumBytes else {
            throw UsageError("--spec \(path): \(info.st_size) bytes; a spec is at most \(maximumBytes)")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while bytes.count <= maximumBytes {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += chunk[0..<count]
        }
        do {
            return try VMSpec.parse(bytes)
        } catch {
            throw UsageError("--spec \(path): \(error)")
        }
    }

    /// A spec handed over as bytes (a warm-pool VMM's), parsed and validated as `run --spec` does.
    static func parse(_ bytes: [UInt8], what: String) throws(UsageError) -> VMSpec {
        guard bytes.count <= maximumBytes else { throw UsageError("\(what): \(bytes.count) bytes; a spec is at most \(maximumBytes)") }
        let spec: VMSpec
        do {
            spec = try VMSpec.parse(bytes)
        } catch {
            throw UsageError("\(what): \(error)")
        }
        do {
            try SpecValidator.validate(spec)
        } catch {
            throw UsageError(error.message(.commandLine))
        }
        return spec
    }
}
