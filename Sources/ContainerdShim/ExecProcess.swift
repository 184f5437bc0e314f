import ContainerdShimAPI
import Foundation
import SwiftProtobuf

/// A process `ctr task exec` added to a running container: run in the container's VM by the guest
/// init's agent, its output (stdout and stderr together) to the exec's stdout FIFO, its stdin FIFO
/// streamed to it; with `-t` it runs on a pty in the guest, resized by ResizePty.
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
    /// Run on a pty (`exec -t`); its size as ResizePty last gave it (0 0: not yet).
    let terminal: Bool
    private var size: (rows: UInt32, columns: UInt32) = (0, 0)
    /// Frames to the agent come from the stdin copy, Kill and ResizePty: one at a time.
    private let writeLock = NSLock()

    init(_ request: Containerd_Task_V2_ExecProcessRequest) throws {
        terminal = request.terminal
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
    init(id: String, stdin: String, stdout: String, stderr: String, process: OCIBundle.Process, terminal: Bool = false) {
        self.terminal = terminal
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
        let input = stdin.isEmpty || stdin.contains("://") ? -1 : ((try? VMProcess.open(fifo: stdin, write: false)) ?? -1)
        let fd: Int32
        do {
            fd = try GuestAgent.start(socket: socket, process: process, terminal: terminal ? condition.withLock { size } : nil,
                                      streamsInput: input >= 0, records: records)
        } catch {
            close(output)
            close(errors)
            if input >= 0 { close(input) }
            finish(127)
            throw error
        }
        condition.withLock { connection = fd }
        if input >= 0 { Thread.detachNewThread { [self] in copyInput(input) } }
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
        // Under the write lock: no frame goes to a closed (or reused) fd.
        writeLock.withLock { condition.withLock {
            if connection >= 0 { close(connection) }
            connection = -1
            exitStatus = status
            exitedAt = Date()
            stopped = true
            condition.broadcast()
            return exitedAt
        } }
    }

    /// Sends a frame while the connection is open; false when it is not (or the write failed).
    private func send(_ type: Character, _ payload: [UInt8]) -> Bool {
        writeLock.withLock {
            let fd = condition.withLock { stopped ? -1 : connection }
            return fd >= 0 && (try? GuestAgent.frame(fd, type, payload)) != nil
        }
    }

    /// containerd's stdin FIFO to the agent ('I' frames, then 'C' at EOF) until the process ends.
    /// A FIFO no writer opened yet polls as not ready (not as EOF), so early reads wait for ctr.
    private func copyInput(_ input: Int32) {
        defer { close(input) }
        var buffer = [UInt8](repeating: 0, count: 32768)
        while condition.withLock({ !stopped }) {
            var wait = pollfd(fd: input, events: Int16(POLLIN), revents: 0)
            guard poll(&wait, 1, 500) != 0 else { continue }
            let got = read(input, &buffer, buffer.count)
            if got < 0 && errno == EINTR { continue }
            let frame: (Character, [UInt8]) = got > 0 ? ("I", Array(buffer[0..<got])) : ("C", [])
            if !send(frame.0, frame.1) || got <= 0 { return }
        }
    }

    func kill(_ signal: UInt32) throws {
        guard condition.withLock({ started }), send("K", GuestAgent.littleEndian(signal)) else {
            throw ShimError(ShimError.notFound, "exec \(id): process not running")
        }
    }

    /// ResizePty for the exec's pty: before Start the size goes with the request, after it in an 'R' frame.
    func resize(width: UInt32, height: UInt32) throws {
        guard terminal else { throw ShimError(ShimError.failedPrecondition, "vireo: exec \(id) has no terminal (run it with -t)") }
        guard width > 0, height > 0, width <= 65535, height <= 65535 else {
            throw ShimError(ShimError.invalidArgument, "vireo: a terminal size of \(width)x\(height) is out of range")
        }
        let running = condition.withLock {
            size = (height, width)
            return started
        }
        if running { _ = send("R", GuestAgent.littleEndian(height) + GuestAgent.littleEndian(width)) }
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
