import ContainerdShimAPI
import Foundation

/// A container's execs (`ctr task exec`), at most `limit`: added while the container runs, looked
/// up by id, removed once ended (containerd's Delete with an exec id).
final class ExecTable: @unchecked Sendable {
    static let limit = 256
    private let lock = NSLock()
    private var processes: [String: ExecProcess] = [:]

    /// Adds the exec `request` describes to container `taskID`, which must be `running`.
    func add(_ request: Containerd_Task_V2_ExecProcessRequest, taskID: String, running: Bool) throws {
        let process = try ExecProcess(request)
        try lock.withLock {
            guard running else { throw ShimError(ShimError.failedPrecondition, "task \(taskID) is not running") }
            guard processes[request.execID] == nil else { throw ShimError(ShimError.alreadyExists, "exec \(request.execID) already exists") }
            guard processes.count < Self.limit else {
                throw ShimError(ShimError.failedPrecondition, "task \(taskID) has \(Self.limit) execs; delete some")
            }
            processes[request.execID] = process
        }
    }

    func process(_ execID: String) throws -> ExecProcess {
        guard let process = lock.withLock({ processes[execID] }) else { throw ShimError(ShimError.notFound, "exec \(execID) not found") }
        return process
    }

    /// Removes an exec that has ended; its last state.
    func remove(_ execID: String, container: any ContainerTask) throws -> Containerd_Task_V2_StateResponse {
        let process = try process(execID)
        guard !process.isRunning else { throw ShimError(ShimError.failedPrecondition, "exec \(execID) is running; kill it first") }
        let state = process.state(container: container)
        _ = lock.withLock { processes.removeValue(forKey: execID) }
        return state
    }
}
