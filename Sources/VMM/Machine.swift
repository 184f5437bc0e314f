import Devices
import KVM
import Memory
import X86
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What `Machine.run()` reports when the VM has stopped.
public struct RunOutcome: Sendable {
    public let reason: StopReason
    public let statistics: ExitStatistics
    /// Wall-clock seconds from the first vCPU start to the stop.
    public let runSeconds: Double
    /// Peak RSS of the VMM process and the guest RAM resident at the end, in bytes.
    public let peakRSS: UInt64
    public let guestResident: UInt64
    /// Peak RSS minus guest RAM: what the VMM itself costs.
    public var overhead: UInt64 { peakRSS > guestResident ? peakRSS - guestResident : 0 }
}

/// One VM assembled from a VMConfig: KVM VM, guest RAM, devices, loaded kernel and vCPUs.
///
/// `init` builds everything and fails with a user-facing VMMError before any guest code runs;
/// `run()` starts the vCPU threads and returns when the VM stops.
public final class Machine: Sendable {
    public let config: VMConfig
    public let hostKind: HostKind
    /// The command line the guest actually gets (after host adaptations).
    public let commandLine: String
    public let memory: GuestMemory
    public let control = MachineControl()
    let kvm: KVMSystem
    let vm: VirtualMachine
    let vcpus: [VCPU]
    let portBus = Bus(name: "pio")
    let mmioBus = Bus(name: "mmio")
    let console: ConsoleOutput
    let devices: LegacyDevices
    let virtio: VirtioDevices
    /// Child processes the VM's devices run (passt for `--net user`).
    public var helperProcesses: [Int32] { virtio.helperProcesses }
    let liveRunners = Mutex<[VCPURunner]>([])
    let pauseState = Mutex<(paused: Bool, clock: UInt64?)>((false, nil))
    /// vCPUs whose threads did not leave KVM_RUN after the stop (see `waitForVCPUs`).
    public var stuckVCPUs: [UInt32] { stuck.withLock { $0 } }
    private let stuck = Mutex<[UInt32]>([])

    /// CPUID tables set on each vCPU (saved in snapshots).
    let cpuidTables: [[CPUIDEntry]]

    /// Builds a VM that boots `config.kernelPath` from scratch.
    public convenience init(config: VMConfig) throws(VMMError) {
        try self.init(config: config, origin: try FreshBoot(config: config))
    }

    /// Builds a VM from a snapshot directory: guest RAM is mapped lazily and copy-on-write from
    /// the snapshot's memory file (never modified), vCPU, VM and device state are loaded, and `run()`
    /// continues the guest where the snapshot left it. Run-time options (console, API socket) come
    /// from `options`; the machine shape (CPUs, RAM, command line) from the snapshot.
    public convenience init(restoring directory: String, options: VMConfig) throws(VMMError) {
        let origin = try SnapshotRestore(directory: directory)
        try self.init(config: try origin.configuration(options), origin: origin)
    }

    /// The same from descriptors of `state.bin` and `memory.bin` (a warm-pool VMM, which is given
    /// the snapshot rather than its path); both are closed once read and mapped.
    public convenience init(restoring files: SnapshotFiles, options: VMConfig) throws(VMMError) {
        defer { close(files.state) }
        let origin = try SnapshotRestore(files: files)
        try self.init(config: try origin.configuration(options), origin: origin)
    }

    /// Assembles the machine in one direction: the spec's shape → resources (KVM, guest RAM,
    /// devices, the VM) → the guest's origin (a fresh boot or a snapshot) creates the vCPUs and
    /// loads device state. Fails with a user-facing VMMError before any guest code runs.
    init(config: VMConfig, origin: some MachineOrigin) throws(VMMError) {
        self.config = config
        hostKind = HostKind.detect()
        // 1. The spec: its shape and disks, before anything is created.
        try Machine.checkShape(config)
        try Machine.checkDisks(config.disks)
        // 2. Resources.
        let host = try Machine.openKVM(cpus: config.cpus)
        kvm = host.kvm
        memory = try origin.guestMemory(config: config, hostCPUID: host.supportedCPUID)
        console = try ConsoleOutput(terminalFD: config.consoleToStdout ? 1 : nil, logPath: config.consoleLogPath,
                                    logLimit: config.consoleLogLimit)
        virtio = try Machine.virtioDevices(config, memory: memory)
        let adapted = CommandLinePolicy.adapt(config.cmdline, host: hostKind, enabled: config.adaptCommandLineToHost)
        commandLine = origin.commandLine(adapted, deviceArguments: virtio.commandLineArguments)
        let madeVCPUs: [VCPU]
        (vm, madeVCPUs) = try Machine.createVM(kvm, memory: memory, pit: origin.createsPIT(config, kvm: kvm, hostCPUID: host.supportedCPUID))
        let control = self.control
        let console = self.console
        devices = LegacyDevices(vm: vm, console: console, debugExitPort: config.debugExitPort,
                                onReset: { control.stop(console.sawPanic ? .guestPanic : .guestReset) },
                                onDebugExit: { code in control.stop(.debugExit(code: code)) })
        try Machine.register(devices, virtio, portBus: portBus, mmioBus: mmioBus, vm: vm)
        // 3. Boot or restore: the origin makes the vCPUs and sets the state the guest starts from.
        // Guest RAM is in KVM already: KVM resolves the guest addresses some MSRs hold (PV EOI,
        // async PF, kvmclock) when they are set, and refuses them without a memory slot.
        let created = try origin.createVCPUs(MachineParts(vm: vm, memory: memory, config: config, commandLine: commandLine,
                                                          hostCPUID: host.supportedCPUID, hostKind: hostKind,
                                                          madeVCPUs: madeVCPUs))
        vcpus = created.map(\.vcpu)
        cpuidTables = created.map(\.cpuid)
        try origin.loadDeviceState(legacy: devices, virtio: virtio)
    }

    /// Runs the VM until it stops (guest reset, error, signal) and reports why; `isolation` is what
    /// the control socket's `status` reports; `started` is called once the vCPU threads and the
    /// control socket's are started (a warm-pool VMM tells the daemon it is up).
    public func run(isolation: IsolationPlan? = nil, started: (() -> Void)? = nil) -> RunOutcome {
        MachineControl.installKickHandler()
        signal(SIGPIPE, SIG_IGN)  // a vanished console or API client must not kill the VM
        // Blocked before any thread starts, so that every thread inherits the mask and only the
        // signal watcher takes a stop signal.
        SignalWatcher.blockStopSignals(extra: config.snapshotSignal)
        // A control socket that cannot listen fails the run before any guest code runs; its
        // thread starts after the vCPUs'.
        var server: ControlServer?
        if let path = config.apiSocketPath {
            do {
                server = try ControlServer(path: path, machine: self, isolation: isolation)
            } catch {
                return RunOutcome(reason: .error(error.description), statistics: ExitStatistics(), runSeconds: 0,
                                  peakRSS: peakResidentBytes(), guestResident: 0)
            }
        }
        defer { server?.remove() }
        // The vCPUs first: their threads (and their seccomp filters, a JIT each) start while this
        // thread starts the control socket's and the devices' threads, so the guest's first
        // instruction waits for none of them. Nothing a vCPU does needs them running: serial output
        // is written in line until its thread runs, a queue notification waits in its eventfd for
        // the worker, and a stop signal waits, blocked, for the watcher.
        let start = MonotonicClock.now()
        var runners: [VCPURunner] = []
        var threads: [OSThread] = []
        defer { liveRunners.withLock { $0 = [] } }
        let wakeup = control.wakeup
        for vcpu in vcpus {
            let runner = VCPURunner(vcpu: vcpu, portBus: portBus, mmioBus: mmioBus, memory: memory, control: control)
            let thread = OSThread(name: "vireo-vcpu\(vcpu.id)", finished: wakeup) { ThreadRole.vcpu(vcpu.id).enter(under: isolation); runner.run() }
            control.register(vcpu: vcpu, thread: thread)
            runners.append(runner)
            threads.append(thread)
        }
        liveRunners.withLock { $0 = runners }
        // The grace periods the irqchip's, the PIT's and the ioeventfds' registrations left in
        // flight: the VM's teardown at exit waits for them. Expedited now, before the guest's
        // kernel code keeps KVM's SRCU busy, they end ~10 ms sooner. Its thread waits off-CPU.
        let vm = self.vm
        let gracePeriods = OSThread(name: "vireo-srcu") { try? vm.expediteGracePeriods() }
        defer { gracePeriods.join() }
        server?.start()
        console.startRotator()
        devices.serial.startOutputThread { ThreadRole.device("serial").enter(under: isolation) }
        defer { devices.serial.stopOutputThread() }
        var workersFailed = false
        do {
            try virtio.startWorkers(isolation: isolation)
        } catch {
            // The guest ran a moment: it stops as any VM that fails does, with this reason.
            control.stop(.error(error.description))
            workersFailed = true
        }
        defer { virtio.stopWorkers() }
        _ = SignalWatcher.start(control: control, snapshotSignal: config.snapshotSignal) { [self] in snapshotOnSignal() }
        if let fd = config.consoleInputFD {
            let serial = devices.serial
            _ = ConsoleInput(fd: fd, control: control, isolation: isolation) { bytes in serial.receive(bytes) }.start()
        }
        if !workersFailed { started?() }  // the control socket listens: a warm-pool VMM may say it is up
        GuestProfiler.shared?.start(kicking: threads)
        let stuck = waitForVCPUs(threads)
        GuestProfiler.shared?.finish()
        let elapsed = MonotonicClock.now() - start
        self.stuck.withLock { $0 = stuck }
        let statistics = runners.enumerated().filter { !stuck.contains(UInt32($0.offset)) }
            .reduce(ExitStatistics()) { $0 + $1.element.statistics }
        return RunOutcome(reason: control.reason ?? .error("the VM stopped without a reason"),
                          statistics: statistics, runSeconds: elapsed,
                          peakRSS: peakResidentBytes(), guestResident: memory.residentBytes())
    }
}

extension Machine {
    /// Whether the VM has KVM's in-kernel PIT (`PITPolicy`; a restored VM has one when its snapshot did).
    public var hasPIT: Bool { vm.hasPIT }

    /// "running", "paused" or "stopping".
    public var stateName: String {
        if control.isStopping { return "stopping" }
        return pauseState.withLock { $0.paused } ? "paused" : "running"
    }

    /// Guest accesses that hit no device (they read as all-ones).
    public var unclaimedAccesses: (ports: UInt64, mmio: UInt64) { (portBus.unhandledAccesses, mmioBus.unhandledAccesses) }

    /// Exit counts of all vCPUs so far.
    public var liveStatistics: ExitStatistics {
        liveRunners.withLock { $0.reduce(ExitStatistics()) { $0 + $1.statistics } }
    }

    /// Parks every vCPU outside KVM_RUN and freezes the guest's kvmclock, so that after `resume()`
    /// the guest continues where it stopped without seeing the pause as lost time.
    /// Then every virtio device stops taking requests and finishes the one in progress, so guest
    /// memory, rings and device state all describe one moment. If a vCPU does not park in time the
    /// pause fails and the VM keeps running.
    public func pause() throws(PauseError) {
        try pauseState.withLock { (state) throws(PauseError) in
            guard !state.paused else { return }
            try control.pause()
            virtio.pauseDevices()
            state.clock = try? vm.clock()
            state.paused = true
        }
    }

    /// Continues a paused VM.
    public func resume() {
        pauseState.withLock { state in
            guard state.paused else { return }
            if let clock = state.clock { try? vm.setClock(clock) }
            state.paused = false
            virtio.resumeDevices()
            control.resume()
        }
    }

    /// How long vCPU threads get to leave KVM_RUN after a stop before the VMM gives up on them.
    public static let stopGraceSeconds = 2.0

    /// Joins the vCPU threads; returns the ids of those that did not stop within the grace period
    /// (a host that does not deliver the kick signal while it emulates guest kernel code).
    /// Sleeps on `control.wakeup` (posted by a stop and by each vCPU thread as it ends) rather than
    /// polling, so an idle VM's VMM does not wake up at all.
    fileprivate func waitForVCPUs(_ threads: [OSThread]) -> [UInt32] {
        var stopSeen: Double?
        while true {
            if threads.allSatisfy(\.isFinished) {
                for thread in threads { thread.join() }
                return []
            }
            if control.isStopping {
                let now = MonotonicClock.now()
                if stopSeen == nil { stopSeen = now }
                if let stopSeen, now - stopSeen > Machine.stopGraceSeconds {
                    return threads.enumerated().filter { !$0.element.isFinished }.map { UInt32($0.offset) }
                }
                control.kickAll()
            }
            // A stop or a vCPU thread that ends wakes us at once; until then there is nothing to
            // poll for (an idle VM costs no wakeups), after it we re-kick every 5 ms.
            control.wakeup.wait(seconds: control.isStopping ? 0.005 : 1.0)
        }
    }
}

/// Monotonic seconds, for timings.
package enum MonotonicClock {
    package static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
