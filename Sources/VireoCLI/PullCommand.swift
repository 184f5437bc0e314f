import ArgumentParser
import Images
import VMMCommand

/// `vireo pull REF`: brings an image into the cache (and builds its ext4 base).
struct PullCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull",
        abstract: "Import an OCI image into the image cache and build its root filesystem.",
        discussion: """
        REF is an OCI image layout directory, an oci-archive or docker-archive tarball, or a registry \
        reference (host[:port]/name:tag or name@sha256:…, pulled with skopeo). Every blob is checked \
        against its digest.
        """
    )

    @Argument(help: ArgumentHelp("The image: layout directory, archive, or registry reference.", valueName: "ref"))
    var reference: String

    @Option(name: .customLong("state-dir"), help: ArgumentHelp("State directory holding the image cache (default: $VIREO_STATE_DIR, /var/lib/vireo as root, else ~/.local/state/vireo).", valueName: "dir"))
    var stateDirectory: String?

    @Flag(name: .customLong("insecure-registry"), help: "Talk to the registry over plain HTTP / without TLS verification.")
    var insecureRegistry = false

    func run() throws {
        do {
            let store = try ImageCache.open(stateDirectory)
            var importer = ImageImporter(store: store, progress: ImageCache.progress)
            importer.insecureRegistry = insecureRegistry
            let record = try importer.resolve(reference, refresh: true)
            _ = try BaseBuilder(store: store, progress: ImageCache.progress).base(for: record)
            print("\(record.reference) \(record.configDigest)")
        } catch let error as ImageError {
            throw ValidationError(error.description)
        }
    }
}
