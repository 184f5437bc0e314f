/// A content descriptor: what a blob is, its digest and size.
public struct Descriptor: Codable, Sendable, Equatable {
    public var mediaType: String
    public var digest: String
    public var size: Int64
    public var platform: Platform?
    public var annotations: [String: String]?

    public init(mediaType: String, digest: String, size: Int64) {
        self.mediaType = mediaType
        self.digest = digest
        self.size = size
    }
}

/// The OS and CPU an image (or an index entry) is for.
public struct Platform: Codable, Sendable, Equatable {
    public var architecture: String
    public var os: String
    public var variant: String?
}

/// An image index (or Docker manifest list): manifests per platform.
public struct ImageIndex: Codable, Sendable {
    public var schemaVersion: Int?
    public var mediaType: String?
    public var manifests: [Descriptor]
}

/// An image manifest: the config blob and the layers, bottom first.
public struct ImageManifest: Codable, Sendable {
    public var schemaVersion: Int
    public var mediaType: String?
    public var config: Descriptor
    public var layers: [Descriptor]
}

/// The parts of an image config Vireo uses.
public struct ImageConfiguration: Codable, Sendable {
    public var architecture: String?
    public var os: String?
    public var config: ContainerConfig?
    public var rootfs: RootFS?

    public init(architecture: String?, os: String?, config: ContainerConfig?, rootfs: RootFS?) {
        self.architecture = architecture
        self.os = os
        self.config = config
        self.rootfs = rootfs
    }

    /// How to run the image's program.
    public struct ContainerConfig: Codable, Sendable {
        public var User: String?
        public var Env: [String]?
        public var Entrypoint: [String]?
        public var Cmd: [String]?
        public var WorkingDir: String?

        public init(User: String? = nil, Env: [String]? = nil, Entrypoint: [String]? = nil, Cmd: [String]? = nil,
                    WorkingDir: String? = nil) {
            self.User = User
            self.Env = Env
            self.Entrypoint = Entrypoint
            self.Cmd = Cmd
            self.WorkingDir = WorkingDir
        }
    }

    /// The uncompressed layers' digests (`diff_ids`), bottom first.
    public struct RootFS: Codable, Sendable {
        public var type: String
        public var diff_ids: [String]
    }
}

/// Docker's `docker save` archive index (`manifest.json`): one entry per image.
struct DockerArchiveEntry: Codable {
    var Config: String
    var RepoTags: [String]?
    var Layers: [String]
}
