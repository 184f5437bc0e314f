/// An image VM's `image` section: the OCI image to run and the overrides `vireo run --image`
/// takes on its command line. A definition without one is a kernel VM.
public struct ImageDefinition: Codable, Sendable, Equatable {
    /// What the user gave: an OCI layout directory, an archive, or a registry reference.
    public var reference: String
    /// Replaces the image's CMD (ENTRYPOINT stays); nil or empty: the image's CMD.
    public var command: [String]?
    /// Replaces the image's ENTRYPOINT ("" clears it); also drops CMD, as Docker does.
    public var entrypoint: String?
    /// `KEY=VALUE` entries added to (or replacing) the image's environment.
    public var env: [String]?
    public var workdir: String?
    public var user: String?

    public init(reference: String, command: [String]? = nil, entrypoint: String? = nil, env: [String]? = nil,
                workdir: String? = nil, user: String? = nil) {
        self.reference = reference
        self.command = command
        self.entrypoint = entrypoint
        self.env = env
        self.workdir = workdir
        self.user = user
    }

    /// The keys of the API's `image` object.
    public static let fields = ["reference", "command", "entrypoint", "env", "workdir", "user"]
}
