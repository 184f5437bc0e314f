/// How the kernel image is entered.
public enum BootProtocol: String, Sendable, CaseIterable {
    /// bzImage → 64-bit Linux boot protocol; ELF with a Linux note → 64-bit entry with boot_params;
    /// other ELF with a PVH note → PVH; other ELF → 64-bit entry.
    case auto
    /// The Linux 64-bit boot protocol (boot_params in RSI).
    case linux
    /// The Xen PVH entry (32-bit, hvm_start_info in EBX).
    case pvh
}

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
    /// Append `noxsave` on PVM hosts (guest XRSTOR is not emulated there).
    public var adaptCommandLineToHost: Bool = true

    public init(kernelPath: String) { self.kernelPath = kernelPath }

    /// Largest vCPU count Vireo accepts (the MP table and APIC ids bound it).
    public static let maxCPUs = 254
    /// Guest RAM bounds.
    public static let minimumMemory: UInt64 = 16 << 20
    public static let maximumMemory: UInt64 = 1 << 40
    /// virtio-mmio slots (windows and GSIs) for disks, NICs, rng, vsock, balloon and console together.
    public static let virtioSlots = 10

    /// How many virtio slots this configuration needs.
    public var virtioDeviceCount: Int {
        disks.count + nets.count + (rng ? 1 : 0) + (vsock != nil ? 1 : 0) + (balloon != nil ? 1 : 0) + (virtioConsole != nil ? 1 : 0)
    }
}

/// Parses human sizes: `512M`, `1G`, `1.5G` is refused, a bare number means MiB (like QEMU's -m).
public enum ByteSize {
    public static func parse(_ text: String) -> UInt64? {
        var digits = Substring(text.trimmingCharacters(in: " "))
        guard !digits.isEmpty else { return nil }
        var multiplier: UInt64 = 1 << 20
        let lower = digits.lowercased()
        let suffixes: [(String, UInt64)] = [
            ("kib", 1 << 10), ("mib", 1 << 20), ("gib", 1 << 30), ("tib", 1 << 40), ("pib", 1 << 50),
            ("kb", 1 << 10), ("mb", 1 << 20), ("gb", 1 << 30), ("tb", 1 << 40), ("pb", 1 << 50),
            ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("t", 1 << 40), ("p", 1 << 50), ("b", 1),
        ]
        for (suffix, value) in suffixes where lower.hasSuffix(suffix) {
            multiplier = value
            digits = digits.dropLast(suffix.count)
            break
        }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let number = UInt64(digits) else {
            return nil
        }
        let (product, overflow) = number.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : product
    }

    /// `536870912` → `512 MiB`.
    public static func format(_ bytes: UInt64) -> String {
        let units: [(UInt64, String)] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        for (size, name) in units where bytes >= size && bytes % size == 0 { return "\(bytes / size) \(name)" }
        return "\(bytes) bytes"
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
