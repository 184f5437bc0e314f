import Foundation

/// Writes an OCI image layout directory from layer tarballs and a config: the tests' images (built
/// from Debian's busybox-static, no registry needed), and a way to hand-make an image.
public struct LayoutWriter {
    public var configuration: ImageConfiguration.ContainerConfig
    public var architecture = "amd64"
    /// Compress layers with gzip (the usual) or store them plain.
    public var gzip = true

    public init(configuration: ImageConfiguration.ContainerConfig) { self.configuration = configuration }

    /// Writes `layers` (uncompressed tars, bottom first) as an image at `directory` (created).
    public func write(layers: [[UInt8]], to directory: String) throws {
        let blobs = directory + "/blobs/sha256"
        try FileManager.default.createDirectory(atPath: blobs, withIntermediateDirectories: true)
        func store(_ bytes: [UInt8]) throws -> (Digest, Int64) {
            let digest = Digest.of(bytes)
            try Data(bytes).write(to: URL(fileURLWithPath: "\(blobs)/\(digest.hex)"))
            return (digest, Int64(bytes.count))
        }
        var descriptors: [Descriptor] = []
        for layer in layers {
            let blob = gzip ? try LayoutWriter.gzip(layer) : layer
            let (digest, size) = try store(blob)
            descriptors.append(Descriptor(mediaType: MediaType.ociLayerTar + (gzip ? "+gzip" : ""), digest: digest.description, size: size))
        }
        let config = ImageConfiguration(architecture: architecture, os: "linux", config: configuration,
                                        rootfs: .init(type: "layers", diff_ids: layers.map { Digest.of($0).description }))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let (configDigest, configSize) = try store([UInt8](try encoder.encode(config)))
        let manifest = ImageManifest(schemaVersion: 2, mediaType: MediaType.ociManifest,
                                     config: Descriptor(mediaType: MediaType.ociConfig, digest: configDigest.description, size: configSize),
                                     layers: descriptors)
        let (manifestDigest, manifestSize) = try store([UInt8](try encoder.encode(manifest)))
        var entry = Descriptor(mediaType: MediaType.ociManifest, digest: manifestDigest.description, size: manifestSize)
        entry.platform = Platform(architecture: architecture, os: "linux")
        let index = ImageIndex(schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [entry])
        try encoder.encode(index).write(to: URL(fileURLWithPath: directory + "/index.json"))
        try Data(#"{"imageLayoutVersion":"1.0.0"}"#.utf8).write(to: URL(fileURLWithPath: directory + "/oci-layout"))
    }

    static func gzip(_ bytes: [UInt8]) throws -> [UInt8] {
        guard let gzip = Tool.find("gzip") else { throw ImageError("gzip is not installed") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: gzip)
        process.arguments = ["-c", "-n"]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        let writer = Thread { input.fileHandleForWriting.write(Data(bytes)); try? input.fileHandleForWriting.close() }
        writer.start()
        let result = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return [UInt8](result)
    }
}
