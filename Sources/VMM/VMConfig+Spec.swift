extension VMConfig {
    /// The machine a validated spec describes (for a restore, the snapshot later fixes the shape).
    public init(spec: VMSpec) {
        self.init(kernelPath: "")
        if case let .kernel(boot) = spec.boot {
            kernelPath = boot.kernel
            initrdPath = boot.initrd
            cmdline = boot.cmdline
            bootProtocol = boot.bootProtocol
        }
        cpus = spec.machine.cpus
        memoryBytes = UInt64(clamping: spec.machine.memoryBytes)
        consoleLogPath = spec.console.logPath
        consoleLogLimit = spec.console.logMaxBytes
        consoleToStdout = spec.console.toStdout
        consoleInputFD = spec.console.fromStdin ? 0 : nil
        apiSocketPath = spec.control.apiSocket
        snapshotSignal = spec.control.snapshotSignal.flatMap { name in SignalWatcher.snapshotSignals.first { $0.name == name }?.number }
        snapshotDirectory = spec.control.snapshotDirectory
        let devices = spec.devices
        debugExitPort = devices.debugExit ? 0x501 : nil
        pit = devices.pit
        disks = devices.disks.map { DiskSpec(path: $0.path, readOnly: $0.readOnly, id: $0.serial, backing: $0.backing) }
        nets = devices.nets.enumerated().map { index, net in
            NetSpec(backend: net.mode == .tap ? .tap(net.tap ?? "") : .user,
                    mac: net.mac.flatMap(VMSpec.Net.parseMAC) ?? NetSpec.defaultMAC(index: index),
                    ports: net.ports ?? [], ipv4: net.ipv4)
        }
        rng = devices.rng
        vsock = devices.vsock.map { VsockSpec(cid: $0.cid, socketPath: $0.socket) }
        balloon = devices.balloon.map { BalloonSpec(targetBytes: $0.targetBytes) }
        virtioConsole = devices.virtioConsole.map { ConsoleSpec(kind: $0.kind == .socket ? .socket : .file, path: $0.path) }
    }
}

extension IsolationSettings {
    /// The isolation and cgroup settings of a validated spec; `seccomp` stands in for an unset mode.
    public init(spec: VMSpec, defaultSeccomp: SeccompMode = .on) {
        self.init()
        seccomp = spec.isolation.seccomp ?? defaultSeccomp
        jail = spec.isolation.jail
        jailDirectory = spec.isolation.jailDirectory
        user = spec.isolation.user
        group = spec.isolation.group
        uid = spec.isolation.uid
        gid = spec.isolation.gid
        imageRoots = spec.isolation.imageRoots
        cpuWeight = spec.resources.cpuWeight
        cpuMax = spec.resources.cpuMax.map { CPUMax(quotaMicroseconds: $0.quotaMicros, periodMicroseconds: $0.periodMicros) }
        memoryMax = spec.resources.memoryMaxBytes.map { UInt64(clamping: $0) }
        cpuAffinity = spec.resources.cpuAffinity
    }
}
