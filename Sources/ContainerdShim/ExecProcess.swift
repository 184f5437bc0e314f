import ContainerdShimAPI
import Foundation
import SwiftProtobuf

/// A process `ctr task exec` added to a running container: run in the container's VM by the guest
/// init's agent, its output (stdout and stderr together) to the exec's stdout FIFO.
final class ExecProcess: @unchecked Sendable {
    let id: String
    let stdin: String
    let stdout: String
    let stderr: String
    private let process: OCIBundle.Process
    private let condition = NSCondition()
    private var started = false
    private var stopped = false
    private var connection: Int32 = -1
    private var exitStatus: UInt32 = 0
    private var exitedAt = Date()

    init(_ request: Containerd_Task_V2_ExecProcessRequest) throws {
        guard !request.terminal else { throw ShimError(ShimError.invalidArgument, "vireo: exec with a terminal (-t) is not supported yet") }
        guard request.spec.value.count <= OCIBundle.maximumConfig,
              let process = try? JSONDecoder().decode(OCIBundle.Process.self, from: request.spec.value),
              let args = process.args, !args.isEmpty else {
            throw ShimError(ShimError.invalidArgument, "exec \(request.execID): the process spec has no args")
        }
        id = request.execID
        stdin = request.stdin
        stdout = request.stdout
        stderr = request.stderr
        self.process = process
    }

    /// A pod container's own process (the bundle's), run by the agent as an exec is.
    init(id: String, stdin: String, stdout: String, stderr: String, process: OCIBundle.Process) {
        self.id = id
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.process = process
    }

    /// Starts the process through the agent at `socket` (with the agent's pod `records`, if any);
    /// `exited` runs once it has ended.
    func start(socket: String, records: [(Character, String)] = [], exited: @escaping @Sendable (UInt32, Date) -> Void) throws {
        try condition.withLock {
            guard !started else { throw ShimError(ShimError.failedPrecondition, "exec \(id) was already started") }
            started = true
        }
        let output = try VMProcess.open(fifo: stdout, write: true)
        let errors = try VMProcess.open(fifo: stderr, write: true)
        let fd: Int32
        do { fd = try GuestAgent.start(socket: socket, process: process, records: records) } catch {
            close(output)
            close(errors)
            finish(127)
            throw error
        }
        condition.withLock { connection = fd }
        Thread.detachNewThread { [self] in
            let status = GuestAgent.relay(fd, to: output)
            close(output)
            close(errors)
            let at = finish(status)
            exited(status, at)
        }
    }

    /// Ends a process that was never started (a Kill before Start) as if `signal` had killed it;
    /// false when it had started.
    func cancelUnstarted(_ signal: UInt32) -> Bool {
        guard condition.withLock({ () -> Bool in
            defer { started = true }
            return !started
        }) else { return false }
        finish(128 + signal)
        return true
    }

    @discardableResult
    private func finish(_ status: UInt32) -> Date {
        condition.withLock {
            if connection >= 0 { close(connection) }
            connection = -1
            exitStatus = status
            exitedAt = Date()
            stopped = true
            condition.broadcast()
            return exitedAt
        }
    }

    func kill(_ signal: UInt32) throws {
        try condition.withLock {
            guard started, !stopped, connection >= 0 else { throw ShimError(ShimError.notFound, "exec \(id): process not running") }
            GuestAgent.signal(connection, signal)
        }
    }

    func wait() -> (status: UInt32, at: Date) {
        condition.lock()
        defer { condition.unlock() }
        while !stopped { condition.wait() }
        return (exitStatus, exitedAt)
    }

    var isRunning: Bool { condition.withLock { started && !stopped } }

    func state(container: any ContainerTask) -> Containerd_Task_V2_StateResponse {
        condition.withLock {
            var response = Containerd_Task_V2_StateResponse()
            response.id = container.id
            response.execID = id
            response.bundle = container.bundle
            response.pid = container.processID
            response.status = !started ? .created : stopped ? .stopped : .running
            response.stdin = stdin
            response.stdout = stdout
            response.stderr = stderr
            if stopped {
                response.exitStatus = exitStatus
                response.exitedAt = Google_Protobuf_Timestamp(date: exitedAt)
            }
            return response
        }
    }
}
