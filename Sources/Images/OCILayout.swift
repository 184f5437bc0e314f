import Foundation

/// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/…`), read without trusting it.
struct OCILayout {
    let directory: String

    func blobPath(_ digest: Digest) -> String { "\(directory)/blobs/sha256/\(digest.hex)" }

    /// A blob's bytes after checking them against the descriptor (for the small JSON blobs).
    func verifiedBlob(_ descriptor: Descriptor, what: String) throws -> [UInt8] {
        let digest = try Digest.parse(descriptor.digest, what: what)
        guard descriptor.size >= 0 && descriptor.size <= 4 << 20 else { throw ImageError("\(what) \(digest): size \(descriptor.size) is implausible") }
        guard let data = try SmallFile.read(blobPath(digest), what: what) else {
            throw ImageError("\(what) \(digest) is missing from \(directory)")
        }
        let bytes = [UInt8](data)
        guard Digest.of(bytes) == digest else { throw ImageError("\(what): content does not match its digest \(digest); refusing it") }
        return bytes
    }

    /// The manifest for linux/amd64, following nested indexes.
    func selectManifest() throws -> Descriptor {
        guard let data = try SmallFile.read(directory + "/index.json", what: "index.json") else {
            throw ImageError("\(directory) has no index.json")
        }
        let index: ImageIndex
        do { index = try JSONDecoder().decode(ImageIndex.self, from: data) } catch {
            throw ImageError("\(directory)/index.json is not a valid image index: \(error)")
        }
        return try select(from: index, depth: 0)
    }

    private func select(from index: ImageIndex, depth: Int) throws -> Descriptor {
        guard depth < 4 else { throw ImageError("image indexes nested too deeply") }
        let matching = index.manifests.filter { $0.platform == nil || ($0.platform?.os == "linux" && $0.platform?.architecture == "amd64") }
        guard let chosen = matching.first else {
            let platforms = index.manifests.compactMap { $0.platform.map { "\($0.os)/\($0.architecture)" } }
            throw ImageError("no linux/amd64 image here (it has: \(platforms.joined(separator: ", "))); Vireo runs linux/amd64 images only")
        }
        if MediaType.indexes.contains(chosen.mediaType) {
            let bytes = try verifiedBlob(chosen, what: "index")
            do { return try select(from: JSONDecoder().decode(ImageIndex.self, from: Data(bytes)), depth: depth + 1) } catch let error as ImageError {
                throw error
            } catch {
                throw ImageError("nested index \(chosen.digest) is not valid: \(error)")
            }
        }
        guard MediaType.manifests.contains(chosen.mediaType) else {
            throw ImageError("unsupported manifest media type '\(chosen.mediaType)'")
        }
        return chosen
    }
}
