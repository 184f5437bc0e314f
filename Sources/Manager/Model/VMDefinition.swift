@_exported import VMSpec

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
    /// KVM's in-kernel PIT: true, false, or nil (the VMM decides: only when the guest gets no TSC
    /// deadline timer; `vireo run --pit`).
    public var pit: Bool?
    public var resources: ResourceSettings
    public var isolation: IsolationDefinition
    /// The OCI image this VM runs (guest/image-init.c as PID 1); nil: a kernel VM.
    public var image: ImageDefinition?

    public init(name: String, kernel: String, initrd: String? = nil, cmdline: String = VMDefinition.defaultCmdline,
                cpus: Int = 1, memoryMiB: Int = 512, autostart: Bool = false, restartPolicy: RestartPolicy = .no,
                restore: String? = nil, disks: [DiskDefinition] = [], nets: [NetDefinition] = [], rng: Bool = false,
                pit: Bool? = nil, resources: ResourceSettings = ResourceSettings(), isolation: IsolationDefinition = IsolationDefinition(), image: ImageDefinition? = nil) {
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
        self.pit = pit
        self.resources = resources
        self.isolation = isolation
        self.image = image
    }

    public static let defaultCmdline = "console=ttyS0"
    /// An image VM's: quiet, so the console carries the program's output (as `vireo run --image`).
    public static let imageCmdline = "console=ttyS0 quiet loglevel=0 panic=-1 lpj=1000000"
}

/// Limits the API enforces: `SpecLimits` (shared with `vireo run`) in the API's units, and the
/// bounds of the HTTP layer itself.
public enum VMLimits {
    public static let cpus = SpecLimits.cpus
    public static let memoryMiB = Int(SpecLimits.minimumMemoryBytes >> 20)...Int(SpecLimits.maximumMemoryBytes >> 20)
    public static let virtioSlots = SpecLimits.virtioSlots
    /// Each list alone can at most fill every slot (the validator counts them together).
    public static let disks = 0...virtioSlots
    public static let nets = 0...virtioSlots
    /// Request bodies larger than this are refused with 413.
    public static let maxBodyBytes = 1 << 20
}

extension VMDefinition {
    /// The VMM's spec for this definition, without the run-time parts the launcher adds (console
    /// log, control socket): what the shared `SpecValidator` checks.
    public var spec: VMSpec {
        let boot: VMSpec.BootSource = restore.map { .restore(directory: $0) }
            ?? .kernel(VMSpec.KernelBoot(kernel: kernel, initrd: initrd, cmdline: cmdline))
        let devices = VMSpec.Devices(
            disks: disks.map { VMSpec.Disk(path: $0.path, readOnly: $0.readOnly, backing: $0.backing) },
            nets: nets,
            rng: rng,
            pit: pit)
        let limits = VMSpec.Resources(
            cpuWeight: resources.cpuWeight,
            cpuMax: resources.cpuMax,
            memoryMaxBytes: resources.memoryMaxMiB.map(VMDefinition.bytes(mebibytes:)), cpuAffinity: resources.cpuAffinity)
        return VMSpec(machine: VMSpec.MachineShape(cpus: cpus, memoryBytes: VMDefinition.bytes(mebibytes: memoryMiB)),
                      boot: boot, devices: devices, resources: limits,
                      isolation: VMSpec.Isolation(seccomp: isolation.seccomp.flatMap(SeccompMode.init(rawValue:)),
                                                  jail: isolation.jail ?? false, user: isolation.user, group: isolation.group))
    }

    /// MiB to bytes, saturating (an absurd request still reaches the validator's range message).
    static func bytes(mebibytes: Int) -> Int64 {
        let (product, overflow) = Int64(clamping: mebibytes).multipliedReportingOverflow(by: 1 << 20)
        return overflow ? (mebibytes < 0 ? Int64.min : Int64.max) : product
    }
}
