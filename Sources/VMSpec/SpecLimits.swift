/// The one table of limits a VM spec is held to, by the API and by `vireo run` alike.
public enum SpecLimits {
    /// The MP table and APIC ids bound the vCPU count.
    public static let cpus = 1...254
    /// Guest RAM: 16 MiB (the smallest guest) to 1 TiB, in whole 4 KiB pages.
    public static let minimumMemoryBytes: Int64 = 16 << 20
    public static let maximumMemoryBytes: Int64 = 1 << 40
    public static let memoryAlignment: Int64 = 4096
    /// virtio-mmio slots (windows and GSIs) for disks, NICs, rng, vsock, balloon and console together.
    public static let virtioSlots = 10
    /// Linux's COMMAND_LINE_SIZE on x86 (the terminating NUL included).
    public static let cmdlineBytes = 2048
    public static let defaultCmdline = "console=ttyS0"
    /// The serial VIRTIO_BLK_T_GET_ID reports.
    public static let diskIDBytes = 20
    /// Linux's IFNAMSIZ less the NUL.
    public static let tapNameBytes = 1...15
    /// Published ports per NIC (each is a listening socket in passt).
    public static let portForwards = 64
    /// CIDs 0–2 are reserved (hypervisor, local, host) and 2^32-1 is VMADDR_CID_ANY.
    public static let vsockCIDs: ClosedRange<UInt64> = 3...0xFFFF_FFFE
    /// The longest guest-initiated vsock path is PATH_4294967295 (11 more bytes) in a 108-byte sun_path.
    public static let vsockSocketPathBytes = 96
    /// The smallest console log that rotates sensibly.
    public static let minimumConsoleLogBytes: UInt64 = 4096
    /// Signals that may trigger a snapshot.
    public static let snapshotSignals = ["SIGUSR2", "SIGQUIT"]
    /// cgroup v2 cpu.weight.
    public static let cpuWeight = 1...10_000
    /// The kernel's CFS bandwidth bounds, in µs.
    public static let cpuMaxPeriodMicros = 1_000...1_000_000
    public static let cpuMaxQuotaMicros = 1_000...(1 << 40)
    public static let defaultCPUMaxPeriodMicros = 100_000
    /// What the VMM itself needs beyond guest RAM (bench/boot measures 14–20 MiB).
    public static let memoryMaxOverheadBytes: Int64 = 32 << 20
    /// Host CPU numbers `cpuAffinity` may name at all (the host narrows it further).
    public static let cpuNumbers = 0...4095
}
