import ContainerdShimAPI
import Foundation
import SwiftProtobuf

/// containerd's shim v2 task service (`containerd.task.v2.Task`, runtime/v2/task/shim.proto) for one
/// container per shim and VM; Exec runs more processes in the VM through the guest init's agent.
/// Update and Stats work on the VM's cgroup; ResizePty resizes the container's or the exec's
/// terminal; Pause, Resume and Checkpoint answer
/// Unimplemented, which containerd reports to its client as "not implemented".
final class TaskService: @unchecked Sendable {
    static let name = "containerd.task.v2.Task"
    private let id: String
    private let stateDirectory: String
    private let events: EventPublisher
    private let lock = NSLock()
    /// The containers this shim serves: one, or a pod's sandbox and its containers (PodContainer).
    private var tasks: [String: any ContainerTask] = [:]
    /// Called after Shutdown's response is on its way: the serving process ends.
    private let onShutdown: @Sendable () -> Void

    init(id: String, stateDirectory: String, events: EventPublisher, onShutdown: @escaping @Sendable () -> Void) {
        self.id = id
        self.stateDirectory = stateDirectory
        self.events = events
        self.onShutdown = onShutdown
    }

    func handle(service: String, method: String, payload: [UInt8]) throws -> [UInt8] {
        guard service == TaskService.name else { throw ShimError(ShimError.unimplemented, "unknown service \(service)") }
        switch method {
        case "Create": return try reply(create(try Containerd_Task_V2_CreateTaskRequest(serializedBytes: payload)))
        case "Start":
            let request = try Containerd_Task_V2_StartRequest(serializedBytes: payload)
            let task = try existing(request.id)
            if !request.execID.isEmpty {
                let pid = try task.startExec(request.execID)
                var event = Containerd_Events_TaskExecStarted()
                event.containerID = task.id
                event.execID = request.execID
                event.pid = pid
                events.publish(topic: "/tasks/exec-started", typeName: "containerd.events.TaskExecStarted", event: event)
                return try reply(Containerd_Task_V2_StartResponse.with { $0.pid = pid })
            }
            let pid = try task.start()
            var event = Containerd_Events_TaskStart()
            event.containerID = task.id
            event.pid = pid
            events.publish(topic: "/tasks/start", typeName: "containerd.events.TaskStart", event: event)
            return try reply(Containerd_Task_V2_StartResponse.with { $0.pid = pid })
        case "State":
            let request = try Containerd_Task_V2_StateRequest(serializedBytes: payload)
            let task = try existing(request.id)
            if !request.execID.isEmpty { return try reply(try task.exec(request.execID).state(container: task)) }
            return try reply(task.state)
        case "Wait":
            let request = try Containerd_Task_V2_WaitRequest(serializedBytes: payload)
            let task = try existing(request.id)
            let (status, at) = request.execID.isEmpty ? task.wait() : try task.exec(request.execID).wait()
            return try reply(Containerd_Task_V2_WaitResponse.with { $0.exitStatus = status; $0.exitedAt = Google_Protobuf_Timestamp(date: at) })
        case "Kill":
            let request = try Containerd_Task_V2_KillRequest(serializedBytes: payload)
            let task = try existing(request.id)
            if request.execID.isEmpty { try task.kill(request.signal) } else { try task.exec(request.execID).kill(request.signal) }
            return try reply(Google_Protobuf_Empty())
        case "Delete": return try reply(delete(try Containerd_Task_V2_DeleteRequest(serializedBytes: payload)))
        case "Pids":
            let request = try Containerd_Task_V2_PidsRequest(serializedBytes: payload)
            let task = try existing(request.id)
            var response = Containerd_Task_V2_PidsResponse()
            if task.isRunning { response.processes = [.with { $0.pid = task.processID }] }
            return try reply(response)
        case "CloseIO":
            // stdin is the FIFO itself, handed to the VMM: the writer closing it is the EOF.
            _ = try Containerd_Task_V2_CloseIORequest(serializedBytes: payload)
            return try reply(Google_Protobuf_Empty())
        case "Connect":
            let request = try Containerd_Task_V2_ConnectRequest(serializedBytes: payload)
            let taskPID = lock.withLock { tasks[request.id] }?.processID ?? 0
            return try reply(Containerd_Task_V2_ConnectResponse.with { $0.shimPid = UInt32(getpid()); $0.taskPid = taskPID; $0.version = "vireo" })
        case "Shutdown":
            let request = try Containerd_Task_V2_ShutdownRequest(serializedBytes: payload)
            // containerd sends Shutdown after each Delete: a pod's shim serves on while any container is left.
            if !lock.withLock({ tasks.isEmpty }), !request.now { return try reply(Google_Protobuf_Empty()) }
            onShutdown()
            return try reply(Google_Protobuf_Empty())
        case "Exec":
            let request = try Containerd_Task_V2_ExecProcessRequest(serializedBytes: payload)
            try existing(request.id).addExec(request)
            var event = Containerd_Events_TaskExecAdded()
            event.containerID = request.id
            event.execID = request.execID
            events.publish(topic: "/tasks/exec-added", typeName: "containerd.events.TaskExecAdded", event: event)
            return try reply(Google_Protobuf_Empty())
        case "Update":
            let request = try Containerd_Task_V2_UpdateTaskRequest(serializedBytes: payload)
            try existing(request.id).update(resources: Array(request.resources.value))
            return try reply(Google_Protobuf_Empty())
        case "Stats":
            let request = try Containerd_Task_V2_StatsRequest(serializedBytes: payload)
            let metrics = try existing(request.id).metrics()
            var stats = Google_Protobuf_Any()
            // containerd's typeurl names a protobuf message by its full name, without a prefix.
            stats.typeURL = "io.containerd.cgroups.v2.Metrics"
            stats.value = try metrics.serializedData()
            return try reply(Containerd_Task_V2_StatsResponse.with { $0.stats = stats })
        case "ResizePty":
            let request = try Containerd_Task_V2_ResizePtyRequest(serializedBytes: payload)
            let task = try existing(request.id)
            if request.execID.isEmpty {
                try task.resize(width: request.width, height: request.height)
            } else {
                try task.exec(request.execID).resize(width: request.width, height: request.height)
            }
            return try reply(Google_Protobuf_Empty())
        case "Pause", "Resume", "Checkpoint":
            throw ShimError(ShimError.unimplemented, "vireo: \(method) is not supported yet")
        default:
            throw ShimError(ShimError.unimplemented, "unknown method \(method)")
        }
    }

    private func create(_ request: Containerd_Task_V2_CreateTaskRequest) throws -> Containerd_Task_V2_CreateTaskResponse {
        guard lock.withLock({ tasks[request.id] }) == nil else { throw ShimError(ShimError.alreadyExists, "task \(request.id) already exists") }
        let created: any ContainerTask
        if request.id == id {
            guard lock.withLock({ tasks.isEmpty }) else { throw ShimError(ShimError.alreadyExists, "task \(request.id) already exists") }
            created = try ShimTask(request, stateDirectory: stateDirectory, events: events)
        } else {
            created = try podContainer(request)
        }
        try lock.withLock {
            guard tasks[request.id] == nil else { throw ShimError(ShimError.alreadyExists, "task \(request.id) already exists") }
            tasks[request.id] = created
        }
        var event = Containerd_Events_TaskCreate()
        event.containerID = request.id
        event.bundle = request.bundle
        event.rootfs = request.rootfs
        event.io = .with { $0.stdin = request.stdin; $0.stdout = request.stdout; $0.stderr = request.stderr; $0.terminal = request.terminal }
        events.publish(topic: "/tasks/create", typeName: "containerd.events.TaskCreate", event: event)
        return Containerd_Task_V2_CreateTaskResponse()  // no process yet: the VM starts on Start
    }

    private func delete(_ request: Containerd_Task_V2_DeleteRequest) throws -> Containerd_Task_V2_DeleteResponse {
        let task = try existing(request.id)
        if !request.execID.isEmpty {
            let state = try task.removeExec(request.execID)
            return .with { $0.pid = state.pid; $0.exitStatus = state.exitStatus; $0.exitedAt = state.exitedAt }
        }
        guard !task.isRunning else { throw ShimError(ShimError.failedPrecondition, "task \(request.id) is running; kill it first") }
        let state = task.state
        lock.withLock { _ = tasks.removeValue(forKey: request.id) }
        task.deleted()
        var event = Containerd_Events_TaskDelete()
        event.containerID = task.id
        event.id = task.id
        event.pid = state.pid
        event.exitStatus = state.exitStatus
        event.exitedAt = state.exitedAt
        events.publish(topic: "/tasks/delete", typeName: "containerd.events.TaskDelete", event: event)
        return .with { $0.pid = state.pid; $0.exitStatus = state.exitStatus; $0.exitedAt = state.exitedAt }
    }

    private func existing(_ requested: String) throws -> any ContainerTask {
        guard let task = lock.withLock({ tasks[requested] }) else { throw ShimError(ShimError.notFound, "task \(requested) not found") }
        return task
    }

    /// A container of the pod this shim's task (the sandbox) runs: `start` sent it here because its
    /// spec names this sandbox (PodAnnotations).
    private func podContainer(_ request: Containerd_Task_V2_CreateTaskRequest) throws -> PodContainer {
        let bundle = try OCIBundle(path: request.bundle)
        guard PodAnnotations.sandbox(of: bundle.config) == id, let sandbox = lock.withLock({ tasks[id] }) as? ShimTask, let pod = sandbox.pod else {
            throw ShimError(ShimError.invalidArgument, "this shim serves task \(id), not \(request.id) (a pod's container needs its sandbox \(id) running here)")
        }
        return try PodContainer(request, bundle: bundle, sandbox: sandbox, pod: pod, stateDirectory: stateDirectory, events: events)
    }

    private func reply(_ message: some SwiftProtobuf.Message) throws -> [UInt8] { try message.serializedBytes() }
}
