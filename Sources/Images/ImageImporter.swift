import Foundation

/// Brings an image into the cache from an OCI layout directory, an `oci-archive`/`docker-archive`
/// tarball, or a registry (through skopeo), verifying every blob against its digest.
public struct ImageImporter {
    public let store: ImageStore
    /// Progress lines ("pulling …").
    public var progress: (String) -> Void
    /// Skip TLS verification for registries (a local registry on plain HTTP).
    public var insecureRegistry = false

    public init(store: ImageStore, progress: @escaping (String) -> Void = { _ in }) {
        self.store = store
        self.progress = progress
    }

    /// The cached image for `reference`: a local path is (re)read each time (cheap when its blobs are
    /// cached); a registry reference is pulled only when not cached yet, or when `refresh`.
    public func resolve(_ reference: String, refresh: Bool = false) throws -> ImageRecord {
        var info = stat()
        if stat(reference, &info) == 0 { return try importLocal(reference, info: info) }
        if !refresh, let record = store.record(reference) { return record }
        guard !reference.hasPrefix("/") && !reference.hasPrefix("./") else {
            throw ImageError("image \(reference): no such file or directory")
        }
        return try pull(reference)
    }

    private func importLocal(_ path: String, info: stat) throws -> ImageRecord {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        if (info.st_mode & S_IFMT) == S_IFDIR {
            guard FileManager.default.fileExists(atPath: absolute + "/oci-layout") else {
                throw ImageError("\(path) is a directory but not an OCI image layout (no oci-layout file)")
            }
            return try importLayout(absolute, reference: absolute)
        }
        let unpacked = store.temporaryPath("archive")
        defer { SafeTree.removeAll(unpacked) }
        try ArchiveUnpacker.unpack(archive: absolute, into: unpacked)
        if FileManager.default.fileExists(atPath: unpacked + "/oci-layout") {
            return try importLayout(unpacked, reference: absolute)
        }
        if FileManager.default.fileExists(atPath: unpacked + "/manifest.json") {
            return try DockerArchive(store: store, directory: unpacked).importImage(reference: absolute)
        }
        throw ImageError("\(path) is neither an oci-archive (no oci-layout) nor a docker-archive (no manifest.json)")
    }

    /// `skopeo copy` into a temporary OCI layout, then an import of that layout. skopeo is Debian's
    /// registry client (v2 protocol, tokens, basic auth from its auth file); it picks linux/amd64 from a
    /// multi-platform index itself.
    private func pull(_ reference: String) throws -> ImageRecord {
        let layout = store.temporaryPath("pull")
        defer { SafeTree.removeAll(layout) }
        let log = "\(store.logDirectory)/pull-\(Digest.of(Array(reference.utf8)).hex.prefix(12)).log"
        progress("pulling \(reference) (skopeo; log: \(log))")
        var arguments = ["--override-os", "linux", "--override-arch", "amd64", "copy", "--quiet"]
        if insecureRegistry { arguments.append("--src-tls-verify=false") }
        arguments += ["docker://" + reference, "oci:" + layout + ":image"]
        do {
            try Tool.run("skopeo", arguments, log: log, package: "skopeo")
        } catch let error as ImageError {
            var detail = (try? String(contentsOfFile: log, encoding: .utf8))?.split(separator: "\n").last.map(String.init) ?? ""
            // skopeo logs `time=… level=fatal msg="…"`: keep the message.
            if let start = detail.range(of: "msg=\""), let end = detail.lastIndex(of: "\""), end > start.upperBound {
                detail = String(detail[start.upperBound..<end]).replacingOccurrences(of: "\\\"", with: "\"")
            }
            throw ImageError("pulling \(reference) failed: \(detail.isEmpty ? error.description : detail) (log: \(log))")
        }
        return try importLayout(layout, reference: reference)
    }

    /// Imports the linux/amd64 image of an OCI layout directory.
    func importLayout(_ directory: String, reference: String) throws -> ImageRecord {
        let layout = OCILayout(directory: directory)
        let manifestDescriptor = try layout.selectManifest()
        let manifestBytes = try layout.verifiedBlob(manifestDescriptor, what: "manifest")
        let manifest: ImageManifest
        do { manifest = try JSONDecoder().decode(ImageManifest.self, from: Data(manifestBytes)) } catch {
            throw ImageError("manifest \(manifestDescriptor.digest) is not a valid image manifest: \(error)")
        }
        let type = manifest.mediaType ?? manifestDescriptor.mediaType
        guard MediaType.manifests.contains(type) else { throw ImageError("unsupported manifest media type '\(type)'") }
        guard MediaType.configs.contains(manifest.config.mediaType) else {
            throw ImageError("unsupported config media type '\(manifest.config.mediaType)' (not a container image?)")
        }
        let manifestDigest = try store.storeBlob(manifestBytes)
        let configDigest = try Digest.parse(manifest.config.digest, what: "config")
        guard manifest.config.size >= 0, manifest.config.size <= SmallFile.limit else {
            throw ImageError("config \(configDigest): size \(manifest.config.size) is implausible")
        }
        try store.importBlob(from: layout.blobPath(configDigest), expected: configDigest, size: manifest.config.size, what: "config \(configDigest)")
        let config = try ImageConfigReader.read(store: store, digest: configDigest)
        guard config.rootfs?.diff_ids.count == manifest.layers.count else {
            throw ImageError("the config lists \(config.rootfs?.diff_ids.count ?? 0) layers, the manifest \(manifest.layers.count)")
        }
        var layers: [Digest] = []
        var total = Int64(manifestBytes.count) + manifest.config.size
        for (index, layer) in manifest.layers.enumerated() {
            guard MediaType.layers.contains(layer.mediaType) else {
                throw ImageError("layer \(index + 1): unsupported media type '\(layer.mediaType)'")
            }
            let digest = try Digest.parse(layer.digest, what: "layer \(index + 1)")
            if !store.hasBlob(digest) { progress("layer \(index + 1)/\(manifest.layers.count) \(digest.hex.prefix(12)) (\(layer.size) bytes)") }
            try store.importBlob(from: layout.blobPath(digest), expected: digest, size: layer.size, what: "layer \(index + 1) (\(digest))")
            layers.append(digest)
            total += layer.size
        }
        let record = ImageRecord(reference: reference, manifestDigest: manifestDigest, configDigest: configDigest,
                                 layers: layers, size: total, imported: Int64(Date().timeIntervalSince1970))
        try store.save(record)
        return record
    }
}

/// Reads and checks an image config from the cache.
enum ImageConfigReader {
    static func read(store: ImageStore, digest: Digest) throws -> ImageConfiguration {
        let config: ImageConfiguration
        do { config = try JSONDecoder().decode(ImageConfiguration.self, from: try store.readBlob(digest)) } catch let error as ImageError {
            throw error
        } catch {
            throw ImageError("config \(digest) is not a valid image config: \(error)")
        }
        let os = config.os ?? "?", architecture = config.architecture ?? "?"
        guard os == "linux", architecture == "amd64" else {
            throw ImageError("the image is for \(os)/\(architecture); Vireo runs linux/amd64 images only")
        }
        return config
    }
}
