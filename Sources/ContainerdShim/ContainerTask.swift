import ContainerdShimAPI
import Foundation

/// What the task service asks of a container, whether it has a VM of its own (`ShimTask`: a plain
/// `ctr run`, or a pod's sandbox) or runs as processes in its pod's VM (`PodContainer`).
protocol ContainerTask: AnyObject, Sendable {
    var id: String { get }
    var bundle: String { get }
    /// The host pid containerd sees (the VM's `vireo run`), 0 before Start.
    var processID: UInt32 { get }
    var isRunning: Bool { get }
    var state: Containerd_Task_V2_StateResponse { get }
    func start() throws -> UInt32
    func kill(_ signal: UInt32) throws
    func wait() -> (status: UInt32, at: Date)
    func update(resources: [UInt8]) throws
    func metrics() throws -> Io_Containerd_Cgroups_V2_Metrics
    func addExec(_ request: Containerd_Task_V2_ExecProcessRequest) throws
    func exec(_ execID: String) throws -> ExecProcess
    func startExec(_ execID: String) throws -> UInt32
    func removeExec(_ execID: String) throws -> Containerd_Task_V2_StateResponse
    /// ResizePty for the container's own terminal.
    func resize(width: UInt32, height: UInt32) throws
    /// After Delete: release what the container held on the host (mounts, disks, slots).
    func deleted()
}

extension ShimTask: ContainerTask {
    func deleted() {
        RootfsImage.unmount(bundle + "/rootfs")
    }
}

/// CRI's annotations on a container's OCI spec (what containerd's CRI plugin sets, and `ctr run
/// --annotation` can): which pod a container belongs to, and whether it is the pod's sandbox.
enum PodAnnotations {
    static let containerType = "io.kubernetes.cri.container-type"
    static let sandboxID = "io.kubernetes.cri.sandbox-id"

    /// The pod's sandbox id for a container of a pod (not for the sandbox itself), else nil.
    static func sandbox(of config: OCIBundle.Config) -> String? {
        guard let annotations = config.annotations, annotations[containerType] == "container",
              let sandbox = annotations[sandboxID], !sandbox.isEmpty else { return nil }
        return sandbox
    }

    static func isSandbox(_ config: OCIBundle.Config) -> Bool { config.annotations?[containerType] == "sandbox" }
}
