/// What the cache knows about one named image: where it came from and which blobs make it.
public struct ImageRecord: Codable, Sendable {
    /// The reference the user gave (a path made absolute, or a registry reference).
    public var reference: String
    public var manifestDigest: Digest
    public var configDigest: Digest
    public var layers: [Digest]
    /// Compressed bytes of the manifest, config and layers.
    public var size: Int64
    /// Seconds since 1970 when the image was imported.
    public var imported: Int64

    /// The short image ID (as `docker images` shows it): the config digest's first 12 hex digits.
    public var shortID: String { String(configDigest.hex.prefix(12)) }
}
