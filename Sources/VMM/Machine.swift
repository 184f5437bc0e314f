import Devices
import KVM
import Memory
import X86
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
    /// vCPUs whose threads did not leave KVM_RUN after the stop (see `waitForVCPUs`).
    public private(set) var stuckVCPUs: [UInt32] = []

    public init(config: VMConfig) throws(VMMError) {
        self.config = config
        hostKind = HostKind.detect()
        guard (1...VMConfig.maxCPUs).contains(config.cpus) else {
            throw .invalidConfiguration("--cpus must be between 1 and \(VMConfig.maxCPUs), got \(config.cpus)")
        }
        guard (VMConfig.minimumMemory...VMConfig.maximumMemory).contains(config.memoryBytes),
              config.memoryBytes % 4096 == 0 else {
            throw .invalidConfiguration("guest memory must be a multiple of 4 KiB between \(ByteSize.format(VMConfig.minimumMemory)) and \(ByteSize.format(VMConfig.maximumMemory))")
        }
        let kernelBytes = try FileLoader.read(config.kernelPath, what: "kernel")
        let initrdBytes = try config.initrdPath.map { (path) throws(VMMError) in try FileLoader.read(path, what: "initrd") }
        commandLine = CommandLinePolicy.adapt(config.cmdline, host: hostKind, enabled: config.adaptCommandLineToHost)

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

        do {
            memory = try GuestMemory(layout: X86MemoryLayout.regions(ramSize: config.memoryBytes))
        } catch {
            throw .invalidConfiguration("cannot allocate \(ByteSize.format(config.memoryBytes)) of guest memory: \(error)")
        }

        console = try ConsoleOutput(terminalFD: config.consoleToStdout ? 1 : nil, logPath: config.consoleLogPath)

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
        portBus.freeze()
        mmioBus.freeze()

        let entry = try BootLoader.load(kernel: kernelBytes, kernelPath: config.kernelPath, initrd: initrdBytes,
                                        initrdPath: config.initrdPath, commandLine: commandLine, cpus: config.cpus,
                                        protocol: config.bootProtocol, memory: memory)

        var created: [VCPU] = []
        do {
            let supported = try kvm.supportedCPUID()
            for index in 0..<config.cpus {
                let vcpu = try vm.createVCPU(id: UInt32(index))
                let tsc = vcpu.tscKHz()
                try vcpu.setCPUID(CPUIDPolicy.entries(supported: supported, index: UInt32(index),
                                                      count: UInt32(config.cpus), tscKHz: tsc,
                                                      hypercallsWork: hostKind != .pvm))
                for msr in BootMSRs.initial { try? vcpu.setMSRs([msr]) }  // optional ones may be absent
                if index == 0 {
                    try vcpu.configureLocalInterrupts()
                    try vcpu.resetFPU()
                    let state = entry.cpuState(basedOn: try vcpu.specialRegisters())
                    try vcpu.setSpecialRegisters(state.specialRegisters)
                    try vcpu.setRegisters(state.registers)
                }
                created.append(vcpu)
            }
        } catch {
            throw .kvm("vCPU setup: \(error)")
        }
        vcpus = created
    }

    /// Runs the VM until it stops (guest reset, error, signal) and reports why.
    public func run() -> RunOutcome {
        MachineControl.installKickHandler()
        SignalWatcher.blockStopSignals()
        _ = SignalWatcher.start(control: control)
        if let fd = config.consoleInputFD {
            let serial = devices.serial
            _ = ConsoleInput(fd: fd, control: control) { bytes in serial.receive(bytes) }.start()
        }
        let start = MonotonicClock.now()
        var runners: [VCPURunner] = []
        var threads: [OSThread] = []
        let wakeup = control.wakeup
        for vcpu in vcpus {
            let runner = VCPURunner(vcpu: vcpu, portBus: portBus, mmioBus: mmioBus, memory: memory, control: control)
            let thread = OSThread(name: "vireo-vcpu\(vcpu.id)") { runner.run(); wakeup.post() }
            control.register(vcpu: vcpu, thread: thread)
            runners.append(runner)
            threads.append(thread)
        }
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
