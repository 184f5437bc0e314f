import Foundation

/// The content-addressed image cache under `<state-dir>/images`:
///   blobs/sha256/HEX   verified manifests, configs and layers
///   refs/HEX.json      an ImageRecord per reference (HEX = sha256 of the reference)
///   bases/HEX.ext4     the root filesystem built from an image (HEX = its config digest)
///   tmp/               work in progress; everything is written here and renamed into place
///   runs/              per-VM overlays and config disks while a VM runs
public struct ImageStore: Sendable {
    public let root: String

    public init(stateDirectory: String) throws {
        root = stateDirectory + "/images"
        for directory in ["", "/blobs/sha256", "/refs", "/bases", "/tmp", "/runs", "/logs"] {
            do {
                try FileManager.default.createDirectory(atPath: root + directory, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch {
                throw ImageError("cannot create the image cache \(root + directory): \(error.localizedDescription)")
            }
        }
    }

    public func blobPath(_ digest: Digest) -> String { "\(root)/blobs/sha256/\(digest.hex)" }
    public func basePath(_ config: Digest) -> String { "\(root)/bases/\(config.hex).ext4" }
    func recordPath(_ reference: String) -> String { "\(root)/refs/\(Digest.of(Array(reference.utf8)).hex).json" }
    public var logDirectory: String { root + "/logs" }

    public func hasBlob(_ digest: Digest) -> Bool { FileManager.default.fileExists(atPath: blobPath(digest)) }

    /// A fresh path under tmp/ (nothing there yet).
    public func temporaryPath(_ label: String) -> String {
        "\(root)/tmp/\(label).\(getpid()).\(UInt64.random(in: 0...UInt64.max))"
    }

    /// Copies `source` into the cache as blob `expected`, hashing it on the way; refuses a mismatch
    /// (digest or size) and leaves nothing behind. A blob already cached is not copied again.
    public func importBlob(from source: String, expected: Digest, size: Int64?, what: String) throws {
        if hasBlob(expected) { return }
        let temporary = temporaryPath("blob")
        defer { unlink(temporary) }
        let actual = try copyHashing(from: source, to: temporary, what: what)
        guard actual.digest == expected else {
            throw ImageError("\(what): content does not match its digest (expected \(expected), got \(actual.digest)); refusing it")
        }
        if let size, size != actual.count {
            throw ImageError("\(what): \(actual.count) bytes, but its descriptor says \(size); refusing it")
        }
        try commit(temporary, to: blobPath(expected))
    }

    /// Copies `source` into the cache under the digest of its content (archives whose blobs are not
    /// named by digest); returns the digest.
    public func importBlob(from source: String, what: String) throws -> (digest: Digest, size: Int64) {
        let temporary = temporaryPath("blob")
        defer { unlink(temporary) }
        let actual = try copyHashing(from: source, to: temporary, what: what)
        if !hasBlob(actual.digest) { try commit(temporary, to: blobPath(actual.digest)) }
        return (actual.digest, actual.count)
    }

    /// Stores `bytes` (a manifest Vireo wrote itself) as a blob.
    public func storeBlob(_ bytes: [UInt8]) throws -> Digest {
        let digest = Digest.of(bytes)
        if hasBlob(digest) { return digest }
        let temporary = temporaryPath("blob")
        defer { unlink(temporary) }
        guard FileManager.default.createFile(atPath: temporary, contents: Data(bytes)) else {
            throw ImageError("cannot write \(temporary)")
        }
        try commit(temporary, to: blobPath(digest))
        return digest
    }

    public func readBlob(_ digest: Digest) throws -> Data {
        guard let data = try SmallFile.read(blobPath(digest), what: "blob \(digest)") else {
            throw ImageError("blob \(digest) is missing from the cache \(root)")
        }
        return data
    }

    /// fsync, then rename into place: a crash leaves either nothing or the whole file.
    func commit(_ temporary: String, to final: String) throws {
        let fd = open(temporary, O_RDONLY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); close(fd) }
        guard rename(temporary, final) == 0 else {
            throw ImageError("cannot move \(temporary) to \(final): \(String(cString: strerror(errno)))")
        }
    }

    private func copyHashing(from source: String, to destination: String, what: String) throws -> (digest: Digest, count: Int64) {
        // A regular file only (a planted /dev/zero link or FIFO would fill the disk or hang), and
        // never more than it held when opened.
        let input = open(source, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard input >= 0 else { throw ImageError("\(what): cannot read \(source): \(String(cString: strerror(errno)))") }
        defer { close(input) }
        var status = stat()
        guard fstat(input, &status) == 0, status.st_mode & S_IFMT == S_IFREG else {
            throw ImageError("\(what): \(source) is not a regular file; refusing it")
        }
        let output = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw ImageError("cannot create \(destination): \(String(cString: strerror(errno)))") }
        defer { close(output) }
        var stream = DigestStream()
        let reader = ByteReader(fd: input, bufferSize: 1 << 20)
        _ = try reader.stream(Int64(status.st_size)) { chunk in
            stream.update(chunk)
            try SafeTree.writeAll(output, chunk) { ImageError("writing \(destination) failed: \(SafeTree.error()) (disk full?)") }
        }
        return (stream.finish(), stream.count)
    }
}
