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
public final class Machine: @unchecked Sendable {
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
    public private(set) var stuckVCPUs: [UInt32] = []

    /// CPUID tables set on each vCPU (saved in snapshots).
    let cpuidTables: [[CPUIDEntry]]

    /// Builds a VM that boots `config.kernelPath` from scratch.
    public convenience init(config: VMConfig) throws(VMMError) {
        try self.init(config: config, snapshot: nil)
    }

    /// Builds a VM from a snapshot directory: guest RAM is mapped lazily and copy-on-write from
    /// the snapshot's memory file (never modified), vCPU, VM and device state are loaded, and `run()`
    /// continues the guest where the snapshot left it. Run-time options (console, API socket) come
    /// from `options`; the machine shape (CPUs, RAM, command line) from the snapshot.
    public convenience init(restoring directory: String, options: VMConfig) throws(VMMError) {
        let image: SnapshotImage
        do {
            image = try SnapshotImage.open(directory)
        } catch {
            throw .boot("snapshot \(directory): \(error)")
        }
        var config = options
        config.kernelPath = image.state.kernelPath
        config.cmdline = image.state.commandLine
        config.cpus = image.state.cpus
        config.memoryBytes = image.state.memoryBytes
        config.debugExitPort = image.state.debugExitPort
        config.adaptCommandLineToHost = false
        // Disks may be overridden on restore (e.g. each clone its own copy); the shape must match.
        if options.disks.isEmpty {
            config.disks = image.state.disks
        } else if options.disks.count != image.state.disks.count {
            throw .invalidConfiguration("the snapshot has \(image.state.disks.count) disk(s); --disk given \(options.disks.count) time(s)")
        }
        config.rng = image.state.rng
        config.nets = image.state.nets
        try self.init(config: config, snapshot: image)
    }

    init(config: VMConfig, snapshot: SnapshotImage?) throws(VMMError) {
        self.config = config
        hostKind = HostKind.detect()
        guard (1...VMConfig.maxCPUs).contains(config.cpus) else {
            throw .invalidConfiguration("--cpus must be between 1 and \(VMConfig.maxCPUs), got \(config.cpus)")
        }
        guard (VMConfig.minimumMemory...VMConfig.maximumMemory).contains(config.memoryBytes),
              config.memoryBytes % 4096 == 0 else {
            throw .invalidConfiguration("guest memory must be a multiple of 4 KiB between \(ByteSize.format(VMConfig.minimumMemory)) and \(ByteSize.format(VMConfig.maximumMemory))")
        }
        var kernelBytes: [UInt8] = []
        var initrdBytes: [UInt8]?
        if snapshot == nil {
            kernelBytes = try FileLoader.read(config.kernelPath, what: "kernel")
            initrdBytes = try config.initrdPath.map { (path) throws(VMMError) in try FileLoader.read(path, what: "initrd") }
        }
        for disk in config.disks { try disk.validate() }
        var seenIDs = Set<String>()
        for disk in config.disks where !seenIDs.insert(disk.id).inserted {
            throw .invalidConfiguration("two disks have the id '\(disk.id)': give each --disk a distinct id=NAME")
        }

        do {
            // VIREO_KVM_DEVICE lets tests point at a missing device; users never need it.
            let devicePath = getenv("VIREO_KVM_DEVICE").map { String(cString: $0) } ?? "/dev/kvm"
            kvm = try KVMSystem(path: devicePath)
            try kvm.requireCapabilities()
        } catch {
            throw .kvm(error.description)
        }
        guard config.cpus <= kvm.maxVCPUs else {
            throw .invalidConfiguration("--cpus \(config.cpus) exceeds this host's KVM limit of \(kvm.maxVCPUs) vCPUs")
        }
        let supported: [CPUIDEntry]
        do {
            supported = try kvm.supportedCPUID()
        } catch {
            throw .kvm(error.description)
        }
        if let snapshot {
            do {
                try CPUFeatureCheck.verify(snapshot: snapshot.state.cpuid.first ?? [], host: supported)
                memory = try snapshot.mapMemory()
            } catch {
                throw .boot("snapshot: \(error)")
            }
        } else {
            do {
                memory = try GuestMemory(layout: X86MemoryLayout.regions(ramSize: config.memoryBytes))
            } catch {
                throw .invalidConfiguration("cannot allocate \(ByteSize.format(config.memoryBytes)) of guest memory: \(error)")
            }
        }

        console = try ConsoleOutput(terminalFD: config.consoleToStdout ? 1 : nil, logPath: config.consoleLogPath,
                                    logLimit: config.consoleLogLimit)

        virtio = VirtioDevices(memory: memory)
        for (index, disk) in config.disks.enumerated() {
            let backend: any BlockBackend
            do {
                if let base = disk.backing {
                    backend = try OverlayBlockBackend(path: disk.path, basePath: base)
                } else {
                    backend = try FileBlockBackend(path: disk.path, readOnly: disk.readOnly)
                }
            } catch {
                throw .invalidConfiguration("disk image \(disk.path): \(error)")
            }
            try virtio.add(VirtioBlock(backend: backend, serial: disk.id), name: "virtio-blk\(index)")
        }
        if config.rng { try virtio.add(VirtioRNG(), name: "virtio-rng") }
        if !config.nets.isEmpty { try NetworkDevices.add(config.nets, to: virtio) }
        try OptionalDevices.add(config, to: virtio)
        let adapted = CommandLinePolicy.adapt(config.cmdline, host: hostKind, enabled: config.adaptCommandLineToHost)
        // A restored guest already booted with its devices on the command line.
        commandLine = snapshot == nil ? ([adapted] + virtio.commandLineArguments).joined(separator: " ") : adapted

        do {
            vm = try kvm.createVM()
            // VT-x needs these two pages for real mode; they sit in the MMIO hole, away from RAM.
            try vm.setTSSAddress(0xFFFB_D000)
            try vm.setIdentityMapAddress(0xFFFB_C000)
            try vm.createIRQChip()
            try vm.createPIT2()
            for (slot, region) in memory.regions.enumerated() {
                try vm.setMemoryRegion(slot: UInt32(slot), guestAddress: region.guestBase, size: region.size, host: region.host)
            }
        } catch {
            throw .kvm(error.description)
        }

        let control = self.control
        let console = self.console
        devices = LegacyDevices(vm: vm, console: console, debugExitPort: config.debugExitPort,
                                onReset: { control.stop(console.sawPanic ? .guestPanic : .guestReset) },
                                onDebugExit: { code in control.stop(.debugExit(code: code)) })
        do {
            try devices.register(on: portBus)
        } catch {
            throw .invalidConfiguration("device layout: \(error)")
        }
        try virtio.register(on: mmioBus, vm: vm)
        portBus.freeze()
        mmioBus.freeze()

        var entry: PreparedBoot?
        if snapshot == nil {
            entry = try BootLoader.load(kernel: kernelBytes, kernelPath: config.kernelPath, initrd: initrdBytes,
                                        initrdPath: config.initrdPath, commandLine: commandLine, cpus: config.cpus,
                                        protocol: config.bootProtocol, memory: memory)
        }

        var created: [VCPU] = []
        var tables: [[CPUIDEntry]] = []
        do {
            if let snapshot { try vm.restoreState(snapshot.state.vm) }
            for index in 0..<config.cpus {
                let vcpu = try vm.createVCPU(id: UInt32(index))
                let table = snapshot?.state.cpuid[index]
                    ?? CPUIDPolicy.entries(supported: supported, index: UInt32(index), count: UInt32(config.cpus),
                                           tscKHz: vcpu.tscKHz(), hypercallsWork: hostKind != .pvm)
                try vcpu.setCPUID(table)
                tables.append(table)
                if let snapshot {
                    try vcpu.restoreState(snapshot.state.vcpus[index])
                } else {
                    for msr in BootMSRs.initial { try? vcpu.setMSRs([msr]) }  // optional ones may be absent
                    if index == 0, let entry {
                        try vcpu.configureLocalInterrupts()
                        try vcpu.resetFPU()
                        let state = entry.cpuState(basedOn: try vcpu.specialRegisters())
                        try vcpu.setSpecialRegisters(state.specialRegisters)
                        try vcpu.setRegisters(state.registers)
                    }
                }
                created.append(vcpu)
            }
        } catch {
            throw .kvm("vCPU setup: \(error)")
        }
        vcpus = created
        cpuidTables = tables
        if let snapshot, snapshot.state.formatIdentifiesDevices {
            try VirtioSlotIdentity.check(saved: snapshot.state.virtioIdentities, configured: virtio.identities)
        }
        if let snapshot {
            do {
                try devices.serial.restoreState(snapshot.state.serial)
                try devices.i8042.restoreState(snapshot.state.i8042)
                try devices.rtc.restoreState(snapshot.state.rtc)
                guard snapshot.state.virtio.count == virtio.slots.count else {
                    throw StateError.invalid(what: "the virtio devices (\(snapshot.state.virtio.count) saved, \(virtio.slots.count) configured)")
                }
                for (slot, state) in zip(virtio.slots, snapshot.state.virtio) { try slot.transport.restoreState(state) }
            } catch {
                throw .boot("snapshot: \(error)")
            }
        }
    }

    /// Runs the VM until it stops (guest reset, error, signal) and reports why.
    public func run() -> RunOutcome {
        MachineControl.installKickHandler()
        signal(SIGPIPE, SIG_IGN)  // a vanished console or API client must not kill the VM
        var server: ControlServer?
        if let path = config.apiSocketPath {
            do {
                server = try ControlServer(path: path, machine: self)
                server?.start()
            } catch {
                return RunOutcome(reason: .error(error.description), statistics: ExitStatistics(), runSeconds: 0,
                                  peakRSS: peakResidentBytes(), guestResident: 0)
            }
        }
        defer { server?.remove() }
        console.startRotator()
        devices.serial.startOutputThread { ThreadRole.device("serial").enter() }
        defer { devices.serial.stopOutputThread() }
        do {
            try virtio.startWorkers()
        } catch {
            return RunOutcome(reason: .error(error.description), statistics: ExitStatistics(), runSeconds: 0,
                              peakRSS: peakResidentBytes(), guestResident: 0)
        }
        defer { virtio.stopWorkers() }
        SignalWatcher.blockStopSignals(extra: config.snapshotSignal)
        _ = SignalWatcher.start(control: control, snapshotSignal: config.snapshotSignal) { [self] in snapshotOnSignal() }
        if let fd = config.consoleInputFD {
            let serial = devices.serial
            _ = ConsoleInput(fd: fd, control: control) { bytes in serial.receive(bytes) }.start()
        }
        let start = MonotonicClock.now()
        var runners: [VCPURunner] = []
        var threads: [OSThread] = []
        defer { liveRunners.withLock { $0 = [] } }
        let wakeup = control.wakeup
        for vcpu in vcpus {
            let runner = VCPURunner(vcpu: vcpu, portBus: portBus, mmioBus: mmioBus, memory: memory, control: control)
            let thread = OSThread(name: "vireo-vcpu\(vcpu.id)") { ThreadRole.vcpu(vcpu.id).enter(); runner.run(); wakeup.post() }
            control.register(vcpu: vcpu, thread: thread)
            runners.append(runner)
            threads.append(thread)
        }
        liveRunners.withLock { $0 = runners }
        let stuck = waitForVCPUs(threads)
        let elapsed = MonotonicClock.now() - start
        stuckVCPUs = stuck
        let statistics = runners.enumerated().filter { !stuck.contains(UInt32($0.offset)) }
            .reduce(ExitStatistics()) { $0 + $1.element.statistics }
        return RunOutcome(reason: control.reason ?? .error("the VM stopped without a reason"),
                          statistics: statistics, runSeconds: elapsed,
                          peakRSS: peakResidentBytes(), guestResident: memory.residentBytes())
    }
}

extension Machine {
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
enum MonotonicClock {
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
