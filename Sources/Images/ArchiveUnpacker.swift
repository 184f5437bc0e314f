#if canImport(Glibc)
import Glibc
#endif

/// Unpacks an image archive (oci-archive or docker-archive: a tar of JSON files and blobs) into a
/// fresh directory. Only directories and regular files are written, inside the directory; links are
/// skipped (blobs are found by name, and every blob is verified afterwards).
enum ArchiveUnpacker {
    static func unpack(archive: String, into directory: String) throws {
        guard mkdir(directory, 0o700) == 0 else { throw ImageError("cannot create \(directory): \(SafeTree.error())") }
        let stream = try LayerStream(path: archive)  // `docker save | gzip` archives are fine too
        defer { stream.cancel() }
        let tree = try SafeTree(path: directory)
        let reader = TarReader(fd: stream.fd)
        var budget = UnpackBudget()
        do {
            while let entry = try reader.next() {
                try budget.spendEntry()
                let parts = try SafeTree.components(entry.path)
                guard let name = parts.last else { continue }
                switch entry.kind {
                case .directory:
                    close(try tree.openDirectory(parts[...], create: true))
                case .file:
                    let parent = try tree.openDirectory(parts.dropLast(), create: true)
                    defer { close(parent) }
                    unlinkat(parent, name, 0)
                    let fd = openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
                    guard fd >= 0 else { throw ImageError("cannot create '\(entry.path)': \(SafeTree.error())") }
                    defer { close(fd) }
                    try reader.readData { chunk in
                        try budget.spend(bytes: chunk.count)
                        try SafeTree.writeAll(fd, chunk) { ImageError("writing '\(entry.path)' failed: \(SafeTree.error()) (disk full?)") }
                    }
                default:
                    continue
                }
            }
            try stream.finish()
        } catch let error as ImageError {
            throw ImageError("archive \(archive): \(error.description)")
        }
    }
}
