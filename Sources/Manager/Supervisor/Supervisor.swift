import Foundation
import Images
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Starts, watches and reaps one VMM process per running VM, and owns every VM's record.
///
/// All state changes go through this actor and are written to the Store before they are visible,
/// so a restarted daemon sees what the crashed one last acknowledged. VMM processes run in their
/// own sessions and survive the daemon: `recover()` re-adopts those still running.
public actor Supervisor {
    /// How the Supervisor runs VMs.
    public struct Configuration: Sendable {
        /// Resolved (symlink-free) state directory: VM directories live in `<dir>/vms/`.
        public var stateDirectory: String
        /// The `vireo` executable that runs each VMM.
        public var vmmExecutable: String
        public var consoleLogMaxBytes: Int = 1 << 20
        /// How long a VMM may take to answer on its control socket after it is spawned.
        public var startTimeout: Double = 30
        /// Graceful stop timeout before the VMM is killed, unless the request names one.
        public var stopTimeout: Double = 10
        /// How often VMM processes are checked for an exit.
        public var monitorInterval: Double = 0.1
        /// `--warm-pool N`: VMM processes kept started for snapshot restores (WarmPool); 0: none.
        public var warmPoolSize = 0

        public init(stateDirectory: String, vmmExecutable: String) {
            self.stateDirectory = stateDirectory
            self.vmmExecutable = vmmExecutable
        }
    }

    public nonisolated let configuration: Configuration
    public nonisolated let events: EventBus
    private let store: Store
    private let logger: Logger
    let launcher: VMMLauncher
    /// Pre-started VMMs that restores take (nil without `--warm-pool`).
    let warmPool: WarmPool?
    private let validator: DefinitionValidator

    private var vms: [String: VMRecord] = [:]
    /// Stops and kills the user asked for, so the exit is not taken for a crash.
    private var requests: [String: ExitOutcome.Request] = [:]
    /// VMs whose exit is being recorded right now.
    private var exiting: Set<String> = []
    private var restartTasks: [String: Task<Void, Never>] = [:]
    /// Consecutive runs that ended within `quickRunSeconds`: the restart back-off exponent.
    private var quickExits: [String: Int] = [:]
    private var monitor: Task<Void, Never>?
    /// The per-VM uid each VM's VMM was last started as (VMMPrivileges).
    private var vmmUIDs: [String: uid_t] = [:]
    private static let quickRunSeconds = 10.0

    public init(configuration: Configuration, store: Store, events: EventBus, logger: Logger,
                validator: DefinitionValidator = DefinitionValidator()) {
        self.configuration = configuration
        self.store = store
        self.events = events
        self.logger = logger
        self.validator = validator
        launcher = VMMLauncher(executable: configuration.vmmExecutable, consoleLogMaxBytes: configuration.consoleLogMaxBytes,
                               imageRoots: validator.imageRoots.unrestricted ? nil : validator.imageRoots.directories)
        warmPool = WarmPool.make(configuration, logger: logger)
    }

    public nonisolated func paths(for name: String) -> VMPaths {
        VMPaths(stateDirectory: configuration.stateDirectory, name: name)
    }

    // MARK: Reading

    public func list() -> [VMRecord] { vms.values.sorted { $0.name < $1.name } }

    public func record(_ name: String) throws(APIError) -> VMRecord {
        guard let vm = vms[name] else { throw .notFound(vm: name) }
        return vm
    }

    /// The VMM's own `status` reply (state, exit counts) for a running or paused VM.
    public nonisolated func liveStatus(of vm: VMRecord) async -> VMMStatus? {
        guard vm.state == .running || vm.state == .paused else { return nil }
        return try? await VMMControl(socketPath: paths(for: vm.name).apiSocket, expectedPID: vm.pid).request(.status, timeout: 1).status
    }

    // MARK: Definitions

    public func create(_ definition: VMDefinition) throws -> VMRecord {
        guard vms[definition.name] == nil else { throw APIError.duplicate(definition.name) }
        let vm = VMRecord(definition: definition)
        try store.insert(vm)
        vms[vm.name] = vm
        // A directory left by an earlier VM of this name must not lend it its console log.
        try? FileManager.default.removeItem(atPath: paths(for: vm.name).directory)
        ImageVM.remove(vm.name, stateDirectory: configuration.stateDirectory)
        // A VM the pool may start: its per-VM uid's account look-up (NSS, ~0.2 ms) now, not on its start.
        if let tracker = warmPool?.runningUIDs, definition.restore != nil, definition.isolation.user == nil, geteuid() == 0 {
            _ = tracker.isUnassigned(VMMPrivileges.firstCandidate(for: vm.name))
        }
        emit(vm.name, "created", .defined, "VM '\(vm.name)' created")
        return vm
    }

    /// Changes the fields present in `body` of a VM that is not running.
    public func update(_ name: String, with body: JSONValue) throws -> VMRecord {
        var vm = try record(name)
        try Lifecycle.check(.update, name: name, state: vm.state)
        vm.definition = try validator.update(vm.definition, with: body)
        vm.updatedAt = Date()
        try commit(vm)
        emit(name, "updated", vm.state, "VM '\(name)' definition updated")
        return vm
    }

    /// Removes a VM that is not running (with `force`, kills it first) and its directory.
    public func delete(_ name: String, force: Bool) async throws {
        if force, try record(name).state.hasProcess { _ = try await kill(name) }
        let vm = try record(name)
        try Lifecycle.check(.delete, name: name, state: vm.state)
        restartTasks.removeValue(forKey: name)?.cancel()
        try store.delete(name: name)
        vms[name] = nil
        vmmUIDs[name] = nil
        requests[name] = nil
        quickExits[name] = nil
        try? FileManager.default.removeItem(atPath: paths(for: name).directory)
        ImageVM.remove(name, stateDirectory: configuration.stateDirectory)
        emit(name, "deleted", nil, "VM '\(name)' deleted")
    }

    // MARK: Lifecycle

    /// Starts the VM's VMM and returns once it answers on its control socket.
    public func start(_ name: String) async throws -> VMRecord {
        var vm = try record(name)
        try Lifecycle.check(.start, name: name, state: vm.state)
        restartTasks.removeValue(forKey: name)?.cancel()
        vm.restartCount = 0
        quickExits[name] = 0
        return try await launch(vm)
    }

    /// Asks the VMM to stop; kills it if it has not ended after `timeout` seconds.
    public func stop(_ name: String, timeout: Double? = nil) async throws -> VMRecord {
        var vm = try record(name)
        try Lifecycle.check(.stop, name: name, state: vm.state)
        guard let pid = vm.pid else { throw APIError.internal("VM '\(name)' is \(vm.state.rawValue) but has no VMM process") }
        requests[name] = .stop
        vm.state = .stopping
        vm.stateChangedAt = Date()
        try commit(vm)
        emit(name, "stopping", .stopping, "stopping VM '\(name)'")
        do {
            _ = try await VMMControl(socketPath: paths(for: name).apiSocket, expectedPID: pid).request(.stop, timeout: 2)
        } catch {
            logger.warning("control socket did not take 'stop'; sending SIGTERM", metadata: ["vm": "\(name)", "error": "\(error)"])
            signal(pid, startTime: vm.pidStartTime, SIGTERM)
        }
        if !(await waitForExit(name, pid: pid, timeout: timeout ?? configuration.stopTimeout)) {
            logger.warning("VM did not stop in time; killing it", metadata: ["vm": "\(name)"])
            signal(pid, startTime: vm.pidStartTime, SIGKILL)
            _ = await waitForExit(name, pid: pid, timeout: 10)
        }
        return try record(name)
    }

    /// Kills the VMM at once (SIGKILL).
    public func kill(_ name: String) async throws -> VMRecord {
        let vm = try record(name)
        try Lifecycle.check(.kill, name: name, state: vm.state)
        requests[name] = .kill
        if let pid = vm.pid {
            signal(pid, startTime: vm.pidStartTime, SIGKILL)
            _ = await waitForExit(name, pid: pid, timeout: 10)
        } else if let shim = vm.shimPid {
            // Still starting and the VMM pid is not known yet: kill the shim's whole session.
            Glibc.kill(-shim, SIGKILL)
            let deadline = Date().addingTimeInterval(10)
            while vms[name]?.state == .starting, Date() < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        }
        return try record(name)
    }

    /// Longer than the VMM's own park deadline (5 s), so a vCPU that does not park comes back as
    /// the VMM's error ("did not park … the VM keeps running"), not as a timeout.
    static let pauseTimeout = 15.0

    public func pause(_ name: String) async throws -> VMRecord {
        try await control(name, action: .pause, command: .pause, to: .paused, event: "paused")
    }

    public func resume(_ name: String) async throws -> VMRecord {
        try await control(name, action: .resume, command: .resume, to: .running, event: "resumed")
    }

    /// Writes a snapshot of the VM to `directory` (absolute; absent or an empty directory). A running
    /// VM is paused for it and resumed after; a paused one stays paused. Returns the VMM's reply.
    public func snapshot(_ name: String, to given: String) async throws -> (vm: VMRecord, milliseconds: Int) {
        let vm = try record(name)
        try Lifecycle.check(.snapshot, name: name, state: vm.state)
        let directory = try SnapshotTarget.check(given, roots: validator.imageRoots)
        // The VMM writes into its own `vmm/` directory (the only one a jailed VMM sees, and one its
        // unprivileged user may write); the daemon moves the result out as root (SnapshotOwnership).
        let vmPaths = paths(for: name)
        let staging = SnapshotOwnership.stagingName()
        let control = VMMControl(socketPath: vmPaths.apiSocket, expectedPID: vm.pid)
        let pausedHere = vm.state == .running
        if pausedHere { _ = try await control.request(.pause, timeout: Supervisor.pauseTimeout) }
        let reply: ControlReply
        do {
            // Writing guest RAM takes a while for big guests.
            // Relative to the VMM's working directory, the VM directory (in the jail too): the VMM's
            // uid may not be able to traverse the state directory's ancestors.
            reply = try await control.request(.snapshot(directory: VMPaths.vmmDirectoryName + "/" + staging), timeout: 600)
            try SnapshotOwnership.moveOut(staging, in: vmPaths, to: directory)
        } catch {
            SnapshotOwnership.discard(staging, in: vmPaths)
            if pausedHere { _ = try? await control.request(.resume) }
            throw error
        }
        if pausedHere { _ = try await control.request(.resume) }
        let milliseconds = reply.ms ?? 0
        emit(name, "snapshotted", vm.state, "VM '\(name)' snapshotted to \(directory) in \(milliseconds) ms")
        return (try record(name), milliseconds)
    }

    /// Stop (graceful, then forced) and start again.
    public func restart(_ name: String, timeout: Double? = nil) async throws -> VMRecord {
        try Lifecycle.check(.restart, name: name, state: try record(name).state)
        let stopped = try await stop(name, timeout: timeout)
        try Lifecycle.check(.start, name: name, state: stopped.state)
        return try await start(name)
    }

    private func control(_ name: String, action: VMAction, command: ControlRequest, to target: VMState, event: String) async throws -> VMRecord {
        let vm = try record(name)
        try Lifecycle.check(action, name: name, state: vm.state)
        let reply = try await VMMControl(socketPath: paths(for: name).apiSocket, expectedPID: vm.pid)
            .request(command, timeout: action == .pause ? Supervisor.pauseTimeout : 5)
        guard var current = vms[name], current.pid == vm.pid, current.state == vm.state else { return try record(name) }
        guard reply.state == target.rawValue else {
            throw APIError.vmmUnavailable("the VMM answered '\(command.line)' with state \(reply.state.map { "\"\($0)\"" } ?? "none")")
        }
        current.state = target
        current.stateChangedAt = Date()
        try commit(current)
        emit(name, event, target, "VM '\(name)' \(event)")
        return current
    }

    // MARK: Processes

    /// VMLock.acquire, waiting up to 3 s: an old VMM's shim outlives it by a moment (it writes the
    /// exit status), and a restart policy acts as soon as the VMM itself is gone.
    private func acquireLock(_ paths: VMPaths, name: String) async throws -> Int32 {
        let deadline = Date().addingTimeInterval(3)
        while Date() < deadline && VMLock.isHeld(paths) { try? await Task.sleep(for: .milliseconds(20)) }
        return try VMLock.acquire(paths, name: name)
    }

    /// Spawns the VMM and waits until it answers `status`, or ends.
    private func launch(_ record: VMRecord) async throws -> VMRecord {
        var timeline = WarmPoolTimeline()
        timeline.mark("daemon: routed to the supervisor")
        var vm = record
        let name = vm.name
        try validator.checkPaths(vm.definition)
        let paths = paths(for: name)
        let definition = vm.definition
        // The previous VMM (a jailed one dies a moment after its supervisor) holds the lock until it
        // is gone: wait first, so that it no longer counts as a user of this VM's uid.
        let lockDeadline = Date().addingTimeInterval(3)
        while Date() < lockDeadline && VMLock.isHeld(paths) { try? await Task.sleep(for: .milliseconds(20)) }
        let vmmUID = try VMMPrivileges.perVMUID(for: definition, inUse: uidsInUse(except: name), previous: vmmUIDs[name],
                                                tracker: warmPool?.runningUIDs)
        vmmUIDs[name] = vmmUID
        timeline.mark("daemon: paths checked, lock free, per-VM uid")
        let confinement = VMMConfinement(uid: vmmUID, jail: JailSupport.jail(for: definition.isolation.jail))
        // A VMM that drops to another user writes its console log and socket in `vmm/`, its own.
        try VMDirectory.prepare(paths, owner: try vmmUID.map { VMOwner(uid: $0, gid: $0) } ?? VMOwner(definition.isolation))
        timeline.mark("daemon: VM directory prepared")
        let lock = try await acquireLock(paths, name: name)
        defer { close(lock) }  // the shim and the VMM hold it from here on
        timeline.mark("daemon: VM lock taken")
        // An image VM: its disks for this start (the VM lock is ours: no earlier run still uses the
        // config disk), and the base lock the shim holds from the spawn on.
        var runDefinition = definition
        var baseLock: BaseLock?
        if let section = definition.image {
            let prepared = try ImageVM.prepare(definition, section: section, stateDirectory: configuration.stateDirectory)
            runDefinition = prepared.definition
            baseLock = prepared.lock
        }
        vm.state = .starting
        vm.stateChangedAt = Date()
        vm.pid = nil
        vm.pidStartTime = nil
        vm.startedAt = nil

        // A pooled start hands the VM over first and, once the VMM said `up`, stores it `running`
        // with the VMM's pid and both events in one commit: the store's fsync is off the way to the
        // guest's first instruction, and there is one instead of two on the way to the 200. A daemon
        // that dies in between finds the VMM by its `vmm.pid` (written in the hand-off) and
        // re-adopts it (recover), as it would a VMM whose pid it had stored.
        vms[name] = vm
        var pooled: (shim: Int32, pid: Int32, upSocket: Int32)?
        do {
            pooled = try startFromWarmPool(runDefinition, confinement: confinement, paths: paths, lockFD: lock,
                                           heldFD: baseLock?.descriptor, timeline: &timeline)
        } catch {
            try? finishRun(name, status: nil, outcome: ExitOutcome(state: .error, reason: error.message, status: nil))
            throw error
        }
        // The member's replacement starts once this start is over, off its CPUs (WarmPool.take).
        defer { if pooled != nil { warmPool?.refill() } }
        let shim: Int32
        let upSocket = pooled?.upSocket  // a warm-pool VMM says `up` on it
        defer { if let upSocket { close(upSocket) } }
        var up = false
        if let pooled {
            shim = pooled.shim
            vm.pid = pooled.pid
            vm.shimPid = shim
            vms[name] = vm  // a stop or kill meanwhile finds the VMM
            // Waits until the guest runs before the store's commit and the rest of this start:
            // on a small host they would take CPU from the VMM's last steps to its first instruction.
            up = await WarmPool.waitUntilUp(pooled.upSocket, timeout: configuration.startTimeout)
            guard let current = vms[name], current.state == .starting, current.pid == pooled.pid else { return try startResult(name) }
            vm.pidStartTime = ProcessProbe.startTime(of: pooled.pid)
            if up {
                // Its guest runs: `starting` and `running` in one commit (one fsync, not two).
                vm.state = .running
                vm.startedAt = Date()
                vm.stateChangedAt = vm.startedAt!
                try commit(vm, emitting: [VMEvent(vm: name, type: "starting", state: .starting, message: "starting VM '\(name)'"),
                                          VMEvent(vm: name, type: "started", state: .running, message: "VM '\(name)' running (VMM pid \(pooled.pid))")])
                return vm
            }
        } else {
            try commit(vm)
            emit(name, "starting", .starting, "starting VM '\(name)'")
            do {
                shim = try launcher.spawn(runDefinition, confinement: confinement, paths: paths, lockFD: lock,
                                          heldFD: baseLock?.descriptor)
            } catch {
                try? finishRun(name, status: nil, outcome: ExitOutcome(state: .error, reason: error.message, status: nil))
                throw error
            }
        }
        vm.shimPid = shim
        if pooled != nil {
            try commit(vm, emitting: "starting", "starting VM '\(name)'")
        } else {
            try commit(vm)
        }

        // The shim publishes the VMM pid within milliseconds.
        let pidDeadline = Date().addingTimeInterval(5)
        var published: Int32?
        while published == nil {
            guard vms[name]?.state == .starting, vms[name]?.shimPid == shim else { return try startResult(name) }
            published = VMMLauncher.publishedPID(paths)
            if published != nil { break }
            if !ProcessProbe.isAlive(shim, startTime: nil) || Date() > pidDeadline {
                let status = VMMLauncher.publishedExitStatus(paths)
                let requested = requests.removeValue(forKey: name)
                let outcome = requested != nil
                    ? ExitOutcome.classify(status: status, requested: requested)
                    : ExitOutcome(state: .error, reason: "the VMM process did not start (see \(paths.vmmLog))", status: status)
                try finishRun(name, status: status, outcome: outcome)
                return try startResult(name)
            }
            try? await Task.sleep(for: .milliseconds(2))
        }
        guard let pid = published, var current = vms[name], current.state == .starting else { return try startResult(name) }
        if current.pid != pid {  // a pooled start stored it already
            current.pid = pid
            current.pidStartTime = ProcessProbe.startTime(of: pid)
            try commit(current)
        }

        // Running once the control socket answers, or a warm-pool VMM said `up` (it says so once its
        // vCPUs run and its control socket listens): no polling then. Without `up` (the VMM ended
        // or is slow), the loop below finds out as for any VMM.
        let control = VMMControl(socketPath: paths.apiSocket, expectedPID: pid)
        let readyDeadline = Date().addingTimeInterval(configuration.startTimeout)
        while !up {
            guard let now = vms[name], now.pid == pid, now.state == .starting else { return try startResult(name) }
            if !ProcessProbe.isAlive(pid, startTime: now.pidStartTime) {
                // Returns at once while the monitor records this exit (it waits for the shim's
                // status): without the sleep this loop would hold the actor and it never could.
                await handleExit(name, pid: pid)
                try? await Task.sleep(for: .milliseconds(3))
                continue
            }
            if access(paths.apiSocket, F_OK) == 0, (try? await control.request(.status, timeout: 2)) != nil { break }
            if Date() > readyDeadline {
                logger.error("VMM did not answer on its control socket in time; killing it", metadata: ["vm": "\(name)"])
                signal(pid, startTime: now.pidStartTime, SIGKILL)
                _ = await waitForExit(name, pid: pid, timeout: 10)
                throw APIError.startFailed("VM '\(name)' did not come up within \(Int(configuration.startTimeout)) s")
            }
            try? await Task.sleep(for: .milliseconds(3))
        }
        guard var running = vms[name], running.pid == pid, running.state == .starting else { return try startResult(name) }
        running.state = .running
        running.startedAt = Date()
        running.stateChangedAt = running.startedAt!
        try commit(running, emitting: "started", "VM '\(name)' running (VMM pid \(pid))")
        return running
    }

    /// The per-VM uids other VMs were last started with (VMMPrivileges adds those running now).
    private func uidsInUse(except name: String) -> Set<uid_t> {
        Set(vmmUIDs.filter { $0.key != name }.values)
    }

    /// What a start that was overtaken (the VMM ended, or was killed) returns.
    private func startResult(_ name: String) throws -> VMRecord {
        let vm = try record(name)
        switch vm.state {
        case .running, .paused, .starting: return vm
        case .stopped where vm.lastExitReason == "killed by request": return vm
        default:
            throw APIError.startFailed("VM '\(name)' did not start: \(vm.lastExitReason ?? vm.state.rawValue)")
        }
    }

    /// Waits until the VMM `pid` has ended and its exit is recorded; false on timeout.
    private func waitForExit(_ name: String, pid: Int32, timeout: Double) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard let vm = vms[name], vm.pid == pid else { return true }
            if !exiting.contains(name), !ProcessProbe.isAlive(pid, startTime: vm.pidStartTime) {
                await handleExit(name, pid: pid)
                continue
            }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return vms[name]?.pid != pid
    }

    /// Records the end of VMM `pid`: reads the status the shim wrote, classifies it, applies the
    /// restart policy. Idempotent: the monitor and a waiting request may both get here.
    private func handleExit(_ name: String, pid: Int32) async {
        guard let vm = vms[name], vm.pid == pid, !exiting.contains(name) else { return }
        exiting.insert(name)
        defer { exiting.remove(name) }
        let paths = paths(for: name)
        // The shim writes the status right after the VMM is reaped; give it a moment.
        var status = VMMLauncher.publishedExitStatus(paths)
        let deadline = Date().addingTimeInterval(2)
        while status == nil, Date() < deadline {
            if let shim = vm.shimPid, !ProcessProbe.isAlive(shim, startTime: nil) {
                status = VMMLauncher.publishedExitStatus(paths)
                break
            }
            try? await Task.sleep(for: .milliseconds(2))
            status = VMMLauncher.publishedExitStatus(paths)
        }
        if let shim = vm.shimPid { var ignored: Int32 = 0; waitpid(shim, &ignored, WNOHANG) }
        guard vms[name]?.pid == pid else { return }
        let requested = requests.removeValue(forKey: name)
        let outcome = exitOutcome(of: vm, status: status, requested: requested, paths: paths)
        status = outcome.status
        let ran = vm.startedAt.map { Date().timeIntervalSince($0) } ?? 0
        try? finishRun(name, status: status, outcome: outcome, requested: requested)
        if outcome.restarts(under: vm.restartPolicy, requested: requested) {
            scheduleRestart(name, ranFor: ran, policy: vm.restartPolicy)
        }
    }

    /// What the end of a VMM means: `vireo run`'s status, or for an image VM whose program ended,
    /// the program's status (the init powers the VM off when the program ends).
    private func exitOutcome(of vm: VMRecord, status: Int?, requested: ExitOutcome.Request?, paths: VMPaths) -> ExitOutcome {
        let outcome = ExitOutcome.classify(status: status, requested: requested, detail: VMMLauncher.lastMessage(paths))
        guard vm.image != nil, requested == nil,
              let program = ImageVM.programStatus(vm.name, stateDirectory: configuration.stateDirectory) else { return outcome }
        return ExitOutcome(state: outcome.state == .crashed ? .crashed : .stopped,
                           reason: "the program exited with status \(program)", status: Int(program))
    }

    /// Writes the end of a run into the VM's record and announces it.
    private func finishRun(_ name: String, status: Int?, outcome: ExitOutcome, requested: ExitOutcome.Request? = nil) throws {
        guard var vm = vms[name] else { return }
        // A supervisor killed outright leaves its (empty) jail directory: the VMM's mounts died with
        // its namespace, so rmdir is all there is to do, and it removes nothing that is not empty.
        if let pid = vm.pid { rmdir("\(JailSupport.defaultJailParent)/vm-\(pid)") }
        vm.state = outcome.state
        vm.pid = nil
        vm.pidStartTime = nil
        vm.shimPid = nil
        vm.startedAt = nil
        vm.lastExitStatus = status
        vm.lastExitReason = outcome.reason
        vm.lastExitAt = Date()
        vm.stateChangedAt = vm.lastExitAt!
        vms[vm.name] = vm  // memory first: a failing disk must not leave a dead VM "running"
        let type = requested == .kill ? "killed" : outcome.state.rawValue
        emit(name, type, outcome.state, "VM '\(name)' \(outcome.state.rawValue): \(outcome.reason)")
        try store.save(vm)
    }

    private func scheduleRestart(_ name: String, ranFor seconds: Double, policy: RestartPolicy) {
        let quick = seconds < Supervisor.quickRunSeconds ? (quickExits[name] ?? 0) + 1 : 0
        quickExits[name] = quick
        // 0.1 s, then doubling while runs keep ending quickly, at most 30 s: no crash loop hogs the host.
        let delay = min(0.1 * Double(1 << min(max(quick - 1, 0), 16)), 30)
        emit(name, "restarting", vms[name]?.state, "restarting VM '\(name)' in \(delay) s (restart policy \(policy.rawValue))")
        restartTasks[name]?.cancel()
        restartTasks[name] = Task { [weak self] in
            try? await Task.sleep(for: .seconds(delay))
            guard !Task.isCancelled else { return }
            await self?.policyRestart(name)
        }
    }

    private func policyRestart(_ name: String) async {
        restartTasks[name] = nil
        guard var vm = vms[name], vm.state == .crashed || vm.state == .stopped else { return }
        vm.restartCount += 1
        do {
            _ = try await launch(vm)
        } catch {
            logger.error("restart failed", metadata: ["vm": "\(name)", "error": "\(error)"])
        }
    }

    /// Sends `signal` to `pid` only if it is still the process that was recorded (no pid reuse).
    private func signal(_ pid: Int32, startTime: Int64?, _ signal: Int32) {
        guard ProcessProbe.isAlive(pid, startTime: startTime) else { return }
        Glibc.kill(pid, signal)
    }

    // MARK: Daemon start and monitoring

    /// Loads every VM, re-adopts VMMs still running from an earlier daemon, records the end of
    /// those that ended meanwhile (with their restart policy), then starts `autostart` VMs.
    public func recover() async throws {
        let records = try store.allVMs()
        for vm in records { vms[vm.name] = vm }
        emit(nil, "daemon-started", nil, "daemon started; \(records.count) VM(s) defined")
        for vm in records {
            let paths = paths(for: vm.name)
            let candidate = vm.pid ?? VMMLauncher.publishedPID(paths)
            if let pid = candidate,
               ProcessProbe.isAlive(pid, startTime: pid == vm.pid ? vm.pidStartTime : nil),
               ProcessProbe.workingDirectory(of: pid) == paths.directory {
                await adopt(vm, pid: pid)
            } else if vm.state.hasProcess {
                // It ended while no daemon was watching: the shim left its status behind.
                let status = VMMLauncher.publishedExitStatus(paths)
                let requested: ExitOutcome.Request? = vm.state == .stopping ? .stop : nil
                let outcome = exitOutcome(of: vm, status: status, requested: requested, paths: paths)
                try? finishRun(vm.name, status: outcome.status, outcome: outcome, requested: requested)
                if outcome.restarts(under: vm.restartPolicy, requested: requested) {
                    scheduleRestart(vm.name, ranFor: Supervisor.quickRunSeconds, policy: vm.restartPolicy)
                }
            }
        }
        for vm in vms.values.sorted(by: { $0.name < $1.name })
        where vm.autostart && !vm.state.hasProcess && restartTasks[vm.name] == nil {
            Task { [weak self] in
                do { _ = try await self?.start(vm.name) } catch {
                    await self?.logFailure("autostart failed", name: vm.name, error: error)
                }
            }
        }
    }

    private func logFailure(_ message: Logger.Message, name: String, error: any Error) {
        logger.error(message, metadata: ["vm": "\(name)", "error": "\(error)"])
    }

    private func adopt(_ record: VMRecord, pid: Int32) async {
        var vm = record
        let status = try? await VMMControl(socketPath: paths(for: vm.name).apiSocket, expectedPID: pid).request(.status, timeout: 2)
        vm.pid = pid
        vm.pidStartTime = ProcessProbe.startTime(of: pid)
        vm.state = status?.state == "paused" ? .paused : .running
        if vm.startedAt == nil { vm.startedAt = Date() }
        vm.stateChangedAt = Date()
        try? commit(vm)
        emit(vm.name, "adopted", vm.state, "VM '\(vm.name)' re-adopted (VMM pid \(pid) still \(vm.state.rawValue))")
    }

    /// Watches VMM processes for exits until `shutdown()`.
    public func startMonitor() {
        guard monitor == nil else { return }
        warmPool?.start()
        let interval = configuration.monitorInterval
        monitor = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(interval))
                await self?.checkProcesses()
            }
        }
    }

    private func checkProcesses() async {
        warmPool?.runningUIDs.refreshInBackground()
        // Reap shims that ended (ours are children; adopted ones belong to init).
        var status: Int32 = 0
        while waitpid(-1, &status, WNOHANG) > 0 {}
        let ended = vms.values.filter { vm in
            guard let pid = vm.pid, !exiting.contains(vm.name) else { return false }
            return !ProcessProbe.isAlive(pid, startTime: vm.pidStartTime)
        }
        for vm in ended {
            if let pid = vm.pid { await handleExit(vm.name, pid: pid) }
        }
        for vm in vms.values where vm.pid != nil {
            VMMLog.rotateIfNeeded(paths(for: vm.name), limit: configuration.consoleLogMaxBytes)
        }
    }

    /// Stops watching; the VMs keep running and a later daemon re-adopts them.
    public func shutdown() {
        warmPool?.drain()
        monitor?.cancel()
        monitor = nil
        for task in restartTasks.values { task.cancel() }
        restartTasks.removeAll()
    }

    // MARK: Persistence and events

    /// Writes the record to the store, then makes it current.
    private func commit(_ vm: VMRecord) throws {
        try store.save(vm)
        vms[vm.name] = vm
    }

    /// `commit` and `emit` of the record's new state in one store transaction (one fsync, not two).
    private func commit(_ vm: VMRecord, emitting type: String, _ message: String) throws {
        let event = try store.save(vm, appending: VMEvent(vm: vm.name, type: type, state: vm.state, message: message))
        vms[vm.name] = vm
        announce(event)
    }

    /// `commit` and several events in one store transaction.
    private func commit(_ vm: VMRecord, emitting events: [VMEvent]) throws {
        let stored = try store.save(vm, appending: events)
        vms[vm.name] = vm
        for event in stored { announce(event) }
    }

    private func emit(_ name: String?, _ type: String, _ state: VMState?, _ message: String) {
        var event = VMEvent(vm: name, type: type, state: state, message: message)
        do { event = try store.append(event) } catch {
            logger.error("cannot store an event", metadata: ["error": "\(error)"])
        }
        announce(event)
    }

    /// Publishes a stored event and logs it.
    private func announce(_ event: VMEvent) {
        let name = event.vm, type = event.type, state = event.state, message = event.message
        events.publish(event)
        var metadata: Logger.Metadata = ["event": "\(type)"]
        if let name { metadata["vm"] = "\(name)" }
        if let state { metadata["state"] = "\(state.rawValue)" }
        logger.info("\(message)", metadata: metadata)
    }
}
