/// What a snapshot directory holds, read and verified (checksum, version, memory file size)
/// without mapping its memory: lets the daemon refuse a bad snapshot when a VM is defined.
public struct SnapshotSummary: Sendable, Equatable {
    public var kernelPath: String
    public var commandLine: String
    public var cpus: Int
    public var memoryBytes: UInt64
    public var diskCount: Int
    public var netCount: Int
    public var rng: Bool
    /// Saved virtio devices other than disks, NICs and rng (vsock, balloon, console), described
    /// with their configuration: a restore must configure exactly these (snapshot format 4 on).
    public var optionalDevices: [String] = []

    /// Reads `DIR/state.bin` and checks `DIR/memory.bin`; the error says what is wrong with it.
    public static func read(_ directory: String) throws(SnapshotError) -> SnapshotSummary {
        let state = try SnapshotImage.open(directory).state
        return SnapshotSummary(kernelPath: state.kernelPath, commandLine: state.commandLine, cpus: state.cpus,
                               memoryBytes: state.memoryBytes, diskCount: state.disks.count,
                               netCount: state.nets.count, rng: state.rng,
                               optionalDevices: state.virtioIdentities.filter { ![1, 2, 4].contains($0.type) }.map(\.description))
    }
}
