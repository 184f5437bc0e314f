import ContainerdShimAPI
import Foundation
import SwiftProtobuf

/// One container (containerd task) and its microVM: created (rootfs image ready), running (vireo
/// runs the VM), stopped (exit status known).
final class ShimTask: @unchecked Sendable {
    enum Phase { case created, running, stopped }

    let id: String
    let bundle: String
    let stdin: String
    let stdout: String
    let stderr: String
    private let arguments: [String]
    /// The VM's cgroup (nil: this host offers none the shim can use; Update and Stats then fail).
    private let cgroup: ContainerCgroup?
    /// The guest's RAM (MiB), fixed at Create.
    private let memoryMiB: Int64
    private let stateDirectory: String
    /// Processes added by Exec, by exec id (bounded: a container holds at most 256 at once).
    private let execs = ExecTable()
    private let events: EventPublisher
    private let condition = NSCondition()
    private var phase = Phase.created
    private var pid: pid_t = 0
    private var exitStatus: UInt32 = 0
    private var exitedAt = Date()
    /// The signal containerd asked for when the shim had to stop the VM (SIGKILL and others the guest
    /// cannot be sent): reported as 128+N, as a process killed by it would be.
    private var forcedSignal: UInt32?
    /// Set when this container is a pod's sandbox: its VM takes the pod's containers (PodSandbox).
    let pod: PodSandbox?

    /// `ctr run -t`: the VM runs on a host pty (created at Start).
    let terminal: Bool
    private var pty: ShimTerminal?

    init(_ request: Containerd_Task_V2_CreateTaskRequest, stateDirectory: String, events: EventPublisher) throws {
        guard request.checkpoint.isEmpty else { throw ShimError(ShimError.unimplemented, "vireo: restoring a checkpoint is not supported") }
        let bundle = try OCIBundle(path: request.bundle)
        let layout = try RootfsImage.build(mounts: request.rootfs, bundle: request.bundle, stateDirectory: stateDirectory)
        let (options, command) = bundle.runArguments()
        terminal = request.terminal
        arguments = ["run", "--state-dir", stateDirectory] + options + (terminal ? ["-t"] : []) + ["--image", layout, "--"] + command
        memoryMiB = bundle.memoryMiB
        pod = PodAnnotations.isSandbox(bundle.config) ? PodSandbox(id: request.id) : nil
        cgroup = ContainerCgroup.locate(cgroupsPath: bundle.config.linux?.cgroupsPath, id: request.id)
        id = request.id
        self.stateDirectory = stateDirectory
        self.bundle = request.bundle
        stdin = request.stdin
        stdout = request.stdout
        stderr = request.stderr
        self.events = events
    }

    var processID: UInt32 { condition.withLock { UInt32(max(pid, 0)) } }

    func start() throws -> UInt32 {
        condition.lock()
        defer { condition.unlock() }
        guard phase == .created else { throw ShimError(ShimError.failedPrecondition, "task \(id) was already started") }
        let input = try VMProcess.open(fifo: stdin, write: false)
        defer { close(input) }
        let output = try VMProcess.open(fifo: stdout, write: true)
        defer { close(output) }
        // The guest console is one stream: the program's stderr arrives with its stdout. The stderr
        // FIFO is held open (so containerd's copier sees no early EOF) until the VM ends.
        let isolation = try VMMIsolation.runOptions()
        let podOptions = try pod?.runOptions(isolation: isolation) ?? []
        let errorFIFO = try VMProcess.open(fifo: stderr, write: true)
        var joined: [String] = []
        do {
            try cgroup?.create()
            joined = cgroup?.procsFiles ?? []
        } catch { FileHandle.standardError.write(Data("vireo shim: \(error); the VM runs without a cgroup of its own\n".utf8)) }
        // The isolation options go before `--image` (vireo's options come before the image's).
        let child: pid_t
        var terminal: ShimTerminal?
        do {
            terminal = self.terminal ? try ShimTerminal() : nil
            unlink(OOMWatch.reportPath(bundle: bundle))
            child = try VMProcess.spawn(arguments: Array(arguments.prefix(3)) + isolation + podOptions + Array(arguments.dropFirst(3)),
                                        cgroupProcs: joined, stdin: terminal?.slave ?? input, stdout: terminal?.slave ?? output, stderr: 2,
                                        extraEnvironment: ["VIREO_EXIT_REPORT": OOMWatch.reportPath(bundle: bundle)])
        } catch {
            terminal?.releaseSlave()
            terminal?.closeMaster()
            close(errorFIFO)
            cgroup?.remove()
            pod?.remove()
            throw error
        }
        let pty = terminal
        if let terminal {
            terminal.releaseSlave()
            terminal.copy(input: fcntl(input, F_DUPFD_CLOEXEC, 0), output: fcntl(output, F_DUPFD_CLOEXEC, 0))
        }
        self.pty = pty
        pid = child
        phase = .running
        try? "\(child)".write(toFile: bundle + "/vireo.pid", atomically: true, encoding: .utf8)
        Thread.detachNewThread { [self] in
            let status = VMProcess.wait(child)
            pty?.finish()
            close(errorFIFO)
            let outOfMemory = OOMWatch.guestOutOfMemory(bundle: bundle) || OOMWatch.hostKills(cgroup) > 0
            cgroup?.remove()
            pod?.remove()
            if outOfMemory {
                // Before the exit, as containerd's own shims order them.
                var event = Containerd_Events_TaskOOM()
                event.containerID = id
                events.publish(topic: "/tasks/oom", typeName: "containerd.events.TaskOOM", event: event)
            }
            exited(status)
        }
        return UInt32(child)
    }

    private func exited(_ status: UInt32) {
        condition.lock()
        exitStatus = forcedSignal.map { 128 + $0 } ?? status
        exitedAt = Date()
        phase = .stopped
        try? FileManager.default.removeItem(atPath: bundle + "/vireo.pid")
        let (exitPID, reported, at) = (UInt32(pid), exitStatus, exitedAt)
        condition.broadcast()
        condition.unlock()
        events.publishExit(containerID: id, id: id, pid: exitPID, status: reported, at: at)
    }

    /// SIGTERM, SIGINT, SIGHUP and SIGQUIT reach the program (vireo forwards them over vsock); any
    /// other signal stops the VM (vireo stops it on a second signal) and is reported as 128+N.
    func kill(_ signal: UInt32) throws {
        condition.lock()
        defer { condition.unlock() }
        switch phase {
        case .stopped:
            throw ShimError(ShimError.notFound, "task \(id): process already finished")
        case .created:
            forcedSignal = signal
            exitStatus = 128 + signal
            exitedAt = Date()
            phase = .stopped
            condition.broadcast()
        case .running:
            let forwarded: Set<UInt32> = [UInt32(SIGTERM), UInt32(SIGINT), UInt32(SIGHUP), UInt32(SIGQUIT)]
            if forwarded.contains(signal) {
                Glibc.kill(pid, Int32(signal))
                return
            }
            forcedSignal = signal
            let target = pid
            Glibc.kill(target, SIGTERM)
            Thread.detachNewThread { [self] in
                usleep(300_000)
                Glibc.kill(target, SIGTERM)  // the second one stops the VM
                // A VMM that does not stop within 20 s is killed (vireo's run directory may stay then).
                for _ in 0..<200 {
                    if condition.withLock({ phase == .stopped }) { return }
                    usleep(100_000)
                }
                Glibc.kill(-target, SIGKILL)
            }
        }
    }

    /// Blocks until the task has stopped; its exit status and time.
    func wait() -> (status: UInt32, at: Date) {
        condition.lock()
        defer { condition.unlock() }
        while phase != .stopped { condition.wait() }
        return (exitStatus, exitedAt)
    }

    var state: Containerd_Task_V2_StateResponse {
        condition.withLock {
            var response = Containerd_Task_V2_StateResponse()
            response.id = id
            response.bundle = bundle
            response.pid = UInt32(max(pid, 0))
            response.status = switch phase { case .created: .created; case .running: .running; case .stopped: .stopped }
            response.stdin = stdin
            response.stdout = stdout
            response.stderr = stderr
            if phase == .stopped {
                response.exitStatus = exitStatus
                response.exitedAt = Google_Protobuf_Timestamp(date: exitedAt)
            }
            return response
        }
    }

    var isRunning: Bool { condition.withLock { phase == .running } }

    // MARK: resources

    /// Update: `linux.resources` (runtime-spec JSON in an Any) applied to the VM's cgroup.
    func update(resources: [UInt8]) throws {
        guard let cgroup, condition.withLock({ phase == .running }) else {
            throw ShimError(ShimError.failedPrecondition, "vireo: task \(id) is not running in a cgroup of its own")
        }
        try cgroup.update(resourcesJSON: resources, minimumMemory: (memoryMiB + 32) << 20)
    }

    /// Stats: the VM's cgroup as io.containerd.cgroups.v2.Metrics.
    func metrics() throws -> Io_Containerd_Cgroups_V2_Metrics {
        guard let cgroup, condition.withLock({ phase == .running }) else {
            throw ShimError(ShimError.failedPrecondition, "vireo: task \(id) is not running in a cgroup of its own")
        }
        return cgroup.metrics()
    }

    /// ResizePty for the container's terminal: the pty's new size, and SIGWINCH to vireo, which
    /// passes it on to the guest.
    func resize(width: UInt32, height: UInt32) throws {
        let (terminal, target) = condition.withLock { (pty, phase == .running ? pid : 0) }
        guard let terminal else { throw ShimError(ShimError.failedPrecondition, "vireo: task \(id) has no terminal (run it with -t)") }
        try terminal.resize(width: width, height: height)
        if target > 0 { Glibc.kill(target, SIGWINCH) }
    }

    // MARK: exec

    func addExec(_ request: Containerd_Task_V2_ExecProcessRequest) throws {
        try execs.add(request, taskID: id, running: condition.withLock { phase == .running })
    }

    func exec(_ execID: String) throws -> ExecProcess { try execs.process(execID) }

    /// Starts an exec in the VM; the pid reported is the VM's (the guest's pids are not the host's).
    func startExec(_ execID: String) throws -> UInt32 {
        let process = try exec(execID)
        let vireo = condition.withLock { phase == .running ? pid : 0 }
        guard vireo > 0, let socket = GuestAgent.socket(stateDirectory: stateDirectory, vireo: vireo) else {
            throw ShimError(ShimError.failedPrecondition, "task \(id) is not running (or its VM has no vsock)")
        }
        let containerID = id
        let events = self.events
        try process.start(socket: socket) { status, at in
            events.publishExit(containerID: containerID, id: execID, pid: UInt32(vireo), status: status, at: at)
        }
        return UInt32(vireo)
    }

    func removeExec(_ execID: String) throws -> Containerd_Task_V2_StateResponse {
        try execs.remove(execID, container: self)
    }
}
