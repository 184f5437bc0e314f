@_exported import VMSpec

/// How the kernel image is entered (the spec's type; X86 has a BootProtocol of its own).
public typealias BootProtocol = VMSpec.BootProtocol

/// Everything needed to build and run one VM.
public struct VMConfig: Sendable {
    public var kernelPath: String
    public var initrdPath: String?
    public var cmdline: String = "console=ttyS0"
    public var cpus: Int = 1
    public var memoryBytes: UInt64 = 512 << 20
    public var bootProtocol: BootProtocol = .auto
    /// File the serial console is appended to (in addition to the terminal).
    public var consoleLogPath: String?
    /// Rotate the console log past this many bytes (nil: unbounded).
    public var consoleLogLimit: UInt64?
    /// Path of the VMM control socket (`--api-socket`), if any.
    public var apiSocketPath: String?
    /// Send the console to stdout.
    public var consoleToStdout: Bool = true
    /// File descriptor the serial console reads from (stdin), or nil for no input.
    public var consoleInputFD: Int32? = 0
    /// QEMU-compatible isa-debug-exit port, if enabled.
    public var debugExitPort: UInt16?
    /// The in-kernel i8254 PIT (`--pit on|off|auto`); nil (auto): only when the guest gets no TSC
    /// deadline timer (`PITPolicy`).
    public var pit: Bool?
    /// virtio-blk disks (`--disk`), in order: the first is /dev/vda.
    public var disks: [DiskSpec] = []
    /// virtio-net devices (`--net`).
    public var nets: [NetSpec] = []
    /// A virtio-rng device fed from the host's getrandom (`--rng`; off by default, as in QEMU and Firecracker).
    public var rng: Bool = false
    /// A virtio-vsock device (`--vsock cid=N,socket=PATH`).
    public var vsock: VsockSpec?
    /// A virtio-balloon device (`--balloon`, `--balloon-target`).
    public var balloon: BalloonSpec?
    /// A virtio-console port, hvc0 (`--virtio-console`).
    public var virtioConsole: ConsoleSpec?
    /// `--snapshot-on SIGNAL --snapshot-dir DIR`: each such signal pauses the VM, writes a snapshot to
    /// a new `DIR/snapshot-N` and resumes it.
    public var snapshotSignal: Int32?
    public var snapshotDirectory: String?
    /// Append `noxsave` and `vireo.noerms` on PVM hosts (see `CommandLinePolicy`).
    public var adaptCommandLineToHost: Bool = true

    public init(kernelPath: String) { self.kernelPath = kernelPath }

    /// Largest vCPU count Vireo accepts (the MP table and APIC ids bound it).
    public static let maxCPUs = SpecLimits.cpus.upperBound
    /// Guest RAM bounds.
    public static let minimumMemory = UInt64(SpecLimits.minimumMemoryBytes)
    public static let maximumMemory = UInt64(SpecLimits.maximumMemoryBytes)
    /// virtio-mmio slots (windows and GSIs) for disks, NICs, rng, vsock, balloon and console together.
    public static let virtioSlots = SpecLimits.virtioSlots

    /// How many virtio slots this configuration needs.
    public var virtioDeviceCount: Int {
        disks.count + nets.count + (rng ? 1 : 0) + (vsock != nil ? 1 : 0) + (balloon != nil ? 1 : 0) + (virtioConsole != nil ? 1 : 0)
    }
}

extension String {
    func trimmingCharacters(in character: Character) -> String {
        var result = Substring(self)
        while result.first == character { result = result.dropFirst() }
        while result.last == character { result = result.dropLast() }
        return String(result)
    }
}
