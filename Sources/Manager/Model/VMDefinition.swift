/// When the Supervisor starts a VM again after its VMM process ended on its own.
public enum RestartPolicy: String, Codable, Sendable, CaseIterable {
    /// Never.
    case no
    /// After a crash (VMM failure, guest panic, killed by a signal), not after a clean power-off.
    case onFailure = "on-failure"
    /// After any exit the user did not ask for.
    case always
}

/// What the user defines for a VM: everything needed to start it, nothing about its run.
public struct VMDefinition: Codable, Sendable, Equatable {
    public var name: String
    /// Absolute path of the kernel image.
    public var kernel: String
    /// Absolute path of the initial ramdisk, if any.
    public var initrd: String?
    public var cmdline: String
    public var cpus: Int
    public var memoryMiB: Int
    /// Start this VM when the daemon starts.
    public var autostart: Bool
    public var restartPolicy: RestartPolicy
    /// A snapshot directory: every start restores it instead of booting (kernel, command line, CPUs and
    /// RAM then come from the snapshot).
    public var restore: String?
    public var disks: [DiskDefinition]
    public var nets: [NetDefinition]
    /// A virtio-rng entropy device.
    public var rng: Bool
    public var resources: ResourceSettings
    public var isolation: IsolationDefinition

    public init(name: String, kernel: String, initrd: String? = nil, cmdline: String = VMDefinition.defaultCmdline,
                cpus: Int = 1, memoryMiB: Int = 512, autostart: Bool = false, restartPolicy: RestartPolicy = .no,
                restore: String? = nil, disks: [DiskDefinition] = [], nets: [NetDefinition] = [], rng: Bool = false,
                resources: ResourceSettings = ResourceSettings(), isolation: IsolationDefinition = IsolationDefinition()) {
        self.name = name
        self.kernel = kernel
        self.initrd = initrd
        self.cmdline = cmdline
        self.cpus = cpus
        self.memoryMiB = memoryMiB
        self.autostart = autostart
        self.restartPolicy = restartPolicy
        self.restore = restore
        self.disks = disks
        self.nets = nets
        self.rng = rng
        self.resources = resources
        self.isolation = isolation
    }

    public static let defaultCmdline = "console=ttyS0"
}

/// Limits the API enforces; they match what `vireo run` accepts.
public enum VMLimits {
    public static let cpus = 1...254
    /// 16 MiB (the smallest guest) to 1 TiB (the VMM's limit).
    public static let memoryMiB = 16...(1 << 20)
    /// virtio-mmio slots the VMM has (VMConfig.virtioSlots; DeviceSlotLimitTests keeps them equal),
    /// shared by disks, NICs and the rng: the API never accepts what the VMM cannot build.
    public static let virtioSlots = 10
    public static let disks = 0...virtioSlots
    public static let nets = 0...virtioSlots
    /// cgroup v2 cpu.weight.
    public static let cpuWeight = 1...10_000
    /// The kernel's CFS bandwidth bounds, in µs.
    public static let cpuMaxPeriodMicros = 1_000...1_000_000
    public static let cpuMaxQuotaMicros = 1_000...(1 << 40)
    /// What the VMM itself needs beyond guest RAM (as `vireo run --memory-max` checks).
    public static let memoryMaxOverheadMiB = 32
    /// Linux's COMMAND_LINE_SIZE on x86.
    public static let cmdlineBytes = 2048
    /// Request bodies larger than this are refused with 413.
    public static let maxBodyBytes = 1 << 20
}
