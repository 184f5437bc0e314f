/// The OCI and Docker media types Vireo reads.
public enum MediaType {
    public static let ociIndex = "application/vnd.oci.image.index.v1+json"
    public static let ociManifest = "application/vnd.oci.image.manifest.v1+json"
    public static let ociConfig = "application/vnd.oci.image.config.v1+json"
    public static let dockerList = "application/vnd.docker.distribution.manifest.list.v2+json"
    public static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    public static let dockerConfig = "application/vnd.docker.container.image.v1+json"
    public static let ociLayerTar = "application/vnd.oci.image.layer.v1.tar"

    static let indexes: Set<String> = [ociIndex, dockerList]
    static let manifests: Set<String> = [ociManifest, dockerManifest]
    static let configs: Set<String> = [ociConfig, dockerConfig]
    /// Layers: plain, gzip and zstd tar (the compression is also checked from the bytes themselves).
    static let layers: Set<String> = [
        ociLayerTar, ociLayerTar + "+gzip", ociLayerTar + "+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ]
}
