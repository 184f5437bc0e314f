import Foundation

/// A `docker save` archive, unpacked: `manifest.json` names the config and the layer tarballs by
/// path. Blobs are cached under the digest of their content, and each layer is checked against the
/// config's `diff_ids` when the base is built. Vireo writes the OCI manifest such an archive lacks.
struct DockerArchive {
    let store: ImageStore
    let directory: String

    func importImage(reference: String) throws -> ImageRecord {
        guard let data = try SmallFile.read(directory + "/manifest.json", what: "docker-archive manifest.json") else {
            throw ImageError("docker-archive has no manifest.json")
        }
        let entries: [DockerArchiveEntry]
        do { entries = try JSONDecoder().decode([DockerArchiveEntry].self, from: data) } catch {
            throw ImageError("docker-archive manifest.json is not valid: \(error)")
        }
        guard let entry = entries.first else { throw ImageError("docker-archive manifest.json lists no image") }
        let config = try store.importBlob(from: try path(entry.Config), what: "config")
        _ = try ImageConfigReader.read(store: store, digest: config.digest)
        var layers: [Descriptor] = []
        for (index, layerPath) in entry.Layers.enumerated() {
            let file = try path(layerPath)
            let layer = try store.importBlob(from: file, what: "layer \(index + 1)")
            let magic = [UInt8]((FileHandle(forReadingAtPath: file)?.readData(ofLength: 2)) ?? Data())
            let type = magic == [0x1f, 0x8b] ? MediaType.ociLayerTar + "+gzip" : MediaType.ociLayerTar
            layers.append(Descriptor(mediaType: type, digest: layer.digest.description, size: layer.size))
        }
        let manifest = ImageManifest(schemaVersion: 2, mediaType: MediaType.ociManifest,
                                     config: Descriptor(mediaType: MediaType.ociConfig, digest: config.digest.description, size: config.size),
                                     layers: layers)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let manifestDigest = try store.storeBlob([UInt8](try encoder.encode(manifest)))
        let record = ImageRecord(reference: reference, manifestDigest: manifestDigest, configDigest: config.digest,
                                 layers: try layers.map { try Digest.parse($0.digest, what: "layer") },
                                 size: config.size + layers.reduce(0) { $0 + $1.size }, imported: Int64(Date().timeIntervalSince1970))
        try store.save(record)
        return record
    }

    /// A path from manifest.json, confined to the archive.
    private func path(_ relative: String) throws -> String {
        let parts = try SafeTree.components(relative)
        guard !parts.isEmpty else { throw ImageError("docker-archive names an empty path") }
        return directory + "/" + parts.joined(separator: "/")
    }
}
