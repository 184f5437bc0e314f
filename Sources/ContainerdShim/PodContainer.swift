import ContainerdShimAPI
import Foundation
import Images
import SwiftProtobuf

/// A container of a pod (CRI's `container-type: container` with the pod's `sandbox-id`), run as
/// processes in the pod's VM: its rootfs becomes an ext4 base as a VM's would (tar → one-layer OCI
/// layout → vireo's cached base), gets a copy-on-write overlay of its own, and is hot attached to
/// one of the VM's empty disk slots; the guest agent runs its process in a mount namespace rooted
/// in that disk (guest/image-pod.c). Its stdout (and stderr) reach the container's FIFO; Kill,
/// Wait, State, Exec and Delete work on it; Delete detaches the disk and frees the slot.
final class PodContainer: ContainerTask, @unchecked Sendable {
    let id: String
    let bundle: String
    private let sandbox: ShimTask
    private let pod: PodSandbox
    private let slot: Int
    private let stateDirectory: String
    private let events: EventPublisher
    private let main: ExecProcess
    /// The base's shared lock (vireo's image GC leaves a locked base alone), held until Delete.
    private let baseLock: BaseLock
    private let basePath: String
    private let overlay: String
    private let condition = NSCondition()
    private var attached = false
    private let execs = ExecTable()

    init(_ request: Containerd_Task_V2_CreateTaskRequest, bundle: OCIBundle, sandbox: ShimTask, pod: PodSandbox,
         stateDirectory: String, events: EventPublisher) throws {
        guard let process = bundle.config.process else { throw ShimError(ShimError.invalidArgument, "\(request.bundle)/config.json has no process") }
        let began = Date()
        let layout = try RootfsImage.build(mounts: request.rootfs, bundle: request.bundle, stateDirectory: stateDirectory)
        let archived = Date()
        let store = try ImageStore(stateDirectory: stateDirectory)
        let record = try ImageImporter(store: store).resolve(layout)
        let base = try BaseBuilder(store: store).base(for: record)
        basePath = base.path
        // Where a pod container's start-up time goes (containerd's log): the host's share of it.
        ShimLog.write(String(format: "vireo shim: pod container %@: rootfs to layer %.2f s, ext4 base %.2f s (%@)", request.id,
                             archived.timeIntervalSince(began), Date().timeIntervalSince(archived), base.built ? "built" : "cached"))
        baseLock = try BaseLock(base: basePath)
        slot = try pod.allocateSlot()
        id = request.id
        self.bundle = request.bundle
        self.sandbox = sandbox
        self.pod = pod
        self.stateDirectory = stateDirectory
        self.events = events
        overlay = request.bundle + "/vireo-root.overlay"
        // tty: true: the process runs on a pty of the pod VM's devpts, as an `exec -t` does.
        main = ExecProcess(id: request.id, stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, process: process,
                           terminal: request.terminal)
    }

    deinit { pod.releaseSlot(slot) }

    /// The pod VM's while the container's disk is attached (never takes `main`'s lock: its `state`
    /// asks for this while holding it).
    var processID: UInt32 { condition.withLock({ attached }) ? sandbox.processID : 0 }
    var isRunning: Bool { main.isRunning }

    var state: Containerd_Task_V2_StateResponse {
        var response = main.state(container: self)
        response.execID = ""  // the container's own process
        response.pid = processID
        return response
    }

    /// Hot attaches the root disk (a fresh overlay over the base) and starts the process in it.
    func start() throws -> UInt32 {
        let vireo = sandbox.processID
        guard sandbox.isRunning, vireo > 0, let socket = GuestAgent.socket(stateDirectory: stateDirectory, vireo: pid_t(vireo)) else {
            throw ShimError(ShimError.failedPrecondition, "vireo: the pod's sandbox \(sandbox.id) is not running")
        }
        let began = Date()
        try attachDisk()
        let attached = Date()
        let containerID = id
        let events = self.events
        do {
            try main.start(socket: socket, records: [("R", PodSandbox.slotID(slot))]) { status, at in
                ShimLog.write(String(format: "vireo shim: pod container %@: disk attached in %.2f s; the process ran %.2f s (status %u)", containerID,
                                     attached.timeIntervalSince(began), at.timeIntervalSince(attached), status))
                events.publishExit(containerID: containerID, id: containerID, pid: vireo, status: status, at: at)
            }
        } catch {
            detachDisk()
            throw error
        }
        return vireo
    }

    /// Creates the overlay and its map (empty: the VMM sizes them) and passes them with the base.
    private func attachDisk() throws {
        let map = overlay + ".map"
        var descriptors: [Int32] = []
        defer { for fd in descriptors { close(fd) } }
        for path in [overlay, map] {
            unlink(path)
            let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw ShimError(ShimError.internal, "vireo: cannot create \(path): \(String(cString: strerror(errno)))") }
            descriptors.append(fd)
        }
        let base = open(basePath, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard base >= 0 else { throw ShimError(ShimError.internal, "vireo: cannot open \(basePath): \(String(cString: strerror(errno)))") }
        descriptors.append(base)
        try pod.attach(slot: slot, descriptors: descriptors)
        condition.withLock { attached = true }
    }

    /// Empties the slot (when the VM still runs) and removes the overlay.
    private func detachDisk() {
        let wasAttached = condition.withLock { () -> Bool in
            defer { attached = false }
            return attached
        }
        if wasAttached && sandbox.isRunning {
            do { try pod.detach(slot: slot) } catch { ShimLog.write("\(error)") }
        }
        unlink(overlay)
        unlink(overlay + ".map")
    }

    func kill(_ signal: UInt32) throws {
        if main.cancelUnstarted(signal) { return }  // created, never started: stopped now, as ShimTask does
        guard main.isRunning else { throw ShimError(ShimError.notFound, "task \(id): process already finished") }
        try main.kill(signal)
    }

    func wait() -> (status: UInt32, at: Date) { main.wait() }

    func update(resources: [UInt8]) throws {
        throw ShimError(ShimError.unimplemented, "vireo: container \(id) runs in its pod's VM; resources apply to the pod's sandbox")
    }

    func metrics() throws -> Io_Containerd_Cgroups_V2_Metrics {
        throw ShimError(ShimError.unimplemented, "vireo: container \(id) runs in its pod's VM; metrics are the pod sandbox's")
    }

    // MARK: exec (a process in this container's root: the agent's C record)

    func addExec(_ request: Containerd_Task_V2_ExecProcessRequest) throws {
        try execs.add(request, taskID: id, running: main.isRunning)
    }

    func exec(_ execID: String) throws -> ExecProcess { try execs.process(execID) }

    func startExec(_ execID: String) throws -> UInt32 {
        let process = try exec(execID)
        let vireo = sandbox.processID
        guard main.isRunning, let socket = GuestAgent.socket(stateDirectory: stateDirectory, vireo: pid_t(vireo)) else {
            throw ShimError(ShimError.failedPrecondition, "task \(id) is not running")
        }
        let containerID = id
        let events = self.events
        try process.start(socket: socket, records: [("C", PodSandbox.slotID(slot))]) { status, at in
            events.publishExit(containerID: containerID, id: execID, pid: vireo, status: status, at: at)
        }
        return vireo
    }

    func removeExec(_ execID: String) throws -> Containerd_Task_V2_StateResponse {
        try execs.remove(execID, container: self)
    }

    func resize(width: UInt32, height: UInt32) throws {
        try main.resize(width: width, height: height)
    }

    func deleted() {
        detachDisk()
        RootfsImage.unmount(bundle + "/rootfs")
    }
}
