/// One VM as the VMM runs it: what `vireo run`'s flags describe and what the daemon hands a VMM in
/// a spec file (`vireo-vmm run --spec FILE`). Checked by `SpecValidator` against `SpecLimits` on
/// both sides, so the API and the command line refuse the same VMs with the same words.
public struct VMSpec: Codable, Sendable, Equatable {
    /// The spec format this code writes and reads.
    public static let currentVersion = 1

    public var version: Int
    public var machine: MachineShape
    public var boot: BootSource
    public var devices: Devices
    public var console: Console
    public var control: Control
    public var resources: Resources
    public var isolation: Isolation

    public init(version: Int = VMSpec.currentVersion, machine: MachineShape = MachineShape(), boot: BootSource,
                devices: Devices = Devices(), console: Console = Console(), control: Control = Control(),
                resources: Resources = Resources(), isolation: Isolation = Isolation()) {
        self.version = version
        self.machine = machine
        self.boot = boot
        self.devices = devices
        self.console = console
        self.control = control
        self.resources = resources
        self.isolation = isolation
    }

    /// vCPUs and guest RAM. A restored VM takes both from its snapshot; the values here are then what
    /// the caller expects (the daemon: the snapshot's; `vireo run`: the flags' defaults).
    public struct MachineShape: Codable, Sendable, Equatable {
        public var cpus: Int
        /// Signed so that a negative request reaches the validator (and its message) intact.
        public var memoryBytes: Int64

        public init(cpus: Int = 1, memoryBytes: Int64 = 512 << 20) {
            self.cpus = cpus
            self.memoryBytes = memoryBytes
        }
    }

    /// Where the guest comes from: a kernel booted from scratch, or a snapshot continued.
    public enum BootSource: Codable, Sendable, Equatable {
        case kernel(KernelBoot)
        case restore(directory: String)

        private enum CodingKeys: String, CodingKey { case kernel, restore }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            switch (container.contains(.kernel), container.contains(.restore)) {
            case (true, false): self = .kernel(try container.decode(KernelBoot.self, forKey: .kernel))
            case (false, true): self = .restore(directory: try container.decode(String.self, forKey: .restore))
            default:
                throw JSONCoding.Failure(path: "boot", reason: "give exactly one of 'kernel' and 'restore'")
            }
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            switch self {
            case let .kernel(boot): try container.encode(boot, forKey: .kernel)
            case let .restore(directory): try container.encode(directory, forKey: .restore)
            }
        }
    }

    /// A kernel, its initrd and command line, and how it is entered.
    public struct KernelBoot: Codable, Sendable, Equatable {
        public var kernel: String
        public var initrd: String?
        public var cmdline: String
        public var bootProtocol: BootProtocol

        public init(kernel: String, initrd: String? = nil, cmdline: String = SpecLimits.defaultCmdline,
                    bootProtocol: BootProtocol = .auto) {
            self.kernel = kernel
            self.initrd = initrd
            self.cmdline = cmdline
            self.bootProtocol = bootProtocol
        }
    }

    /// The guest's devices beyond the fixed legacy ones. Every virtio device takes one of
    /// `SpecLimits.virtioSlots`.
    public struct Devices: Codable, Sendable, Equatable {
        public var disks: [Disk]
        public var nets: [Net]
        public var rng: Bool
        public var vsock: Vsock?
        public var balloon: Balloon?
        public var virtioConsole: VirtioConsole?
        /// A QEMU-compatible isa-debug-exit port at 0x501.
        public var debugExit: Bool
        /// KVM's in-kernel i8254 PIT: true, false, or nil (absent: only when the guest gets no TSC
        /// deadline timer).
        public var pit: Bool?

        public init(disks: [Disk] = [], nets: [Net] = [], rng: Bool = false, vsock: Vsock? = nil, balloon: Balloon? = nil,
                    virtioConsole: VirtioConsole? = nil, debugExit: Bool = false, pit: Bool? = nil) {
            self.disks = disks
            self.nets = nets
            self.rng = rng
            self.vsock = vsock
            self.balloon = balloon
            self.virtioConsole = virtioConsole
            self.debugExit = debugExit
            self.pit = pit
        }

        /// Virtio slots these devices take.
        public var virtioCount: Int {
            disks.count + nets.count + (rng ? 1 : 0) + (vsock != nil ? 1 : 0) + (balloon != nil ? 1 : 0) + (virtioConsole != nil ? 1 : 0)
        }
    }

    /// A virtio-blk disk: a raw image, or a copy-on-write overlay over a base image.
    public struct Disk: Codable, Sendable, Equatable {
        public var path: String
        public var readOnly: Bool
        /// The serial the guest sees (VIRTIO_BLK_T_GET_ID); nil: the file name's first 20 bytes.
        public var id: String?
        /// With a base, `path` is an overlay (created when missing) and the base is only read.
        public var backing: String?

        public init(path: String, readOnly: Bool = false, id: String? = nil, backing: String? = nil) {
            self.path = path
            self.readOnly = readOnly
            self.id = id
            self.backing = backing
        }
    }

    /// A virtio-net NIC.
    public struct Net: Codable, Sendable, Equatable {
        /// User-mode networking through passt, or a host TAP device (`tap` names it).
        public enum Mode: String, Codable, Sendable, CaseIterable { case user, tap }

        public var mode: Mode
        public var tap: String?
        /// `XX:XX:XX:XX:XX:XX`; nil: 52:54:00:12:34:5N by position (QEMU's convention).
        public var mac: String?
        /// Host ports published to the guest (mode user only; passt listens on the host).
        public var ports: [PortForward]?
        /// Fixed addresses passt hands the guest (mode user only); nil: passt copies the host's.
        public var ipv4: IPv4?

        public init(mode: Mode, tap: String? = nil, mac: String? = nil, ports: [PortForward]? = nil, ipv4: IPv4? = nil) {
            self.mode = mode
            self.tap = tap
            self.mac = mac
            self.ports = ports
            self.ipv4 = ipv4
        }
    }

    /// A virtio-vsock device: the guest's CID and the host-side Unix socket.
    public struct Vsock: Codable, Sendable, Equatable {
        public var cid: UInt64
        public var socket: String

        public init(cid: UInt64, socket: String) {
            self.cid = cid
            self.socket = socket
        }
    }

    /// A virtio-balloon device and the memory it takes from the guest from the start.
    public struct Balloon: Codable, Sendable, Equatable {
        public var targetBytes: UInt64

        public init(targetBytes: UInt64 = 0) { self.targetBytes = targetBytes }
    }

    /// A virtio console (hvc0): output appended to a file, or a Unix socket for output and input.
    public struct VirtioConsole: Codable, Sendable, Equatable {
        public enum Kind: String, Codable, Sendable { case file, socket }
        public var kind: Kind
        public var path: String

        public init(kind: Kind, path: String) {
            self.kind = kind
            self.path = path
        }
    }

    /// Where the serial console goes and where its input comes from.
    public struct Console: Codable, Sendable, Equatable {
        public var logPath: String?
        /// Rotate the log past this many bytes.
        public var logMaxBytes: UInt64?
        public var toStdout: Bool
        public var fromStdin: Bool

        public init(logPath: String? = nil, logMaxBytes: UInt64? = nil, toStdout: Bool = true, fromStdin: Bool = true) {
            self.logPath = logPath
            self.logMaxBytes = logMaxBytes
            self.toStdout = toStdout
            self.fromStdin = fromStdin
        }
    }

    /// The VMM's control socket and signal-driven snapshots.
    public struct Control: Codable, Sendable, Equatable {
        public var apiSocket: String?
        /// `SIGUSR2` or `SIGQUIT` (`SpecLimits.snapshotSignals`), with `snapshotDirectory`.
        public var snapshotSignal: String?
        public var snapshotDirectory: String?

        public init(apiSocket: String? = nil, snapshotSignal: String? = nil, snapshotDirectory: String? = nil) {
            self.apiSocket = apiSocket
            self.snapshotSignal = snapshotSignal
            self.snapshotDirectory = snapshotDirectory
        }
    }

    /// cgroup limits and pinning of the VMM process; nil leaves the host's default.
    public struct Resources: Codable, Sendable, Equatable {
        public struct CPUMax: Codable, Sendable, Equatable {
            public var quotaMicros: Int
            public var periodMicros: Int

            public init(quotaMicros: Int, periodMicros: Int = SpecLimits.defaultCPUMaxPeriodMicros) {
                self.quotaMicros = quotaMicros
                self.periodMicros = periodMicros
            }
        }

        public var cpuWeight: Int?
        public var cpuMax: CPUMax?
        /// The whole VMM's memory limit: guest RAM plus its own overhead.
        public var memoryMaxBytes: Int64?
        public var cpuAffinity: [Int]?

        public init(cpuWeight: Int? = nil, cpuMax: CPUMax? = nil, memoryMaxBytes: Int64? = nil, cpuAffinity: [Int]? = nil) {
            self.cpuWeight = cpuWeight
            self.cpuMax = cpuMax
            self.memoryMaxBytes = memoryMaxBytes
            self.cpuAffinity = cpuAffinity
        }
    }

    /// How the VMM process is confined.
    public struct Isolation: Codable, Sendable, Equatable {
        /// nil: the VMM's default (`on`, or `$VIREO_SECCOMP` for `vireo run`).
        public var seccomp: SeccompMode?
        public var jail: Bool
        public var jailDirectory: String?
        /// The unprivileged user (name or number) the VMM runs as once the VM is built.
        public var user: String?
        public var group: String?
        /// A numeric identity instead of `user` (the daemon's per-VM uid, which has no account).
        public var uid: UInt32?
        /// The group with `uid`; nil: the same number.
        public var gid: UInt32?
        /// Directories (absolute, link-free) the VMM opens kernel, initrd, disks, overlays and
        /// snapshot state beneath, never following a link (the daemon's image roots); nil: anywhere.
        public var imageRoots: [String]?

        public init(seccomp: SeccompMode? = nil, jail: Bool = false, jailDirectory: String? = nil, user: String? = nil,
                    group: String? = nil, uid: UInt32? = nil, gid: UInt32? = nil, imageRoots: [String]? = nil) {
            self.imageRoots = imageRoots
            self.seccomp = seccomp
            self.jail = jail
            self.jailDirectory = jailDirectory
            self.user = user
            self.group = group
            self.uid = uid
            self.gid = gid
        }
    }
}

extension VMSpec {
    /// The spec as JSON text (what the daemon writes to a VM's spec file).
    public func jsonText() throws -> String {
        try JSONCoding.encode(self).prettySerialized() + "\n"
    }

    /// A spec from JSON text, refusing another format version before looking at anything else.
    public static func parse(_ bytes: [UInt8]) throws -> VMSpec {
        let value = try JSONParser.parse(bytes)
        guard let version = value["version"]?.intValue else {
            throw JSONCoding.Failure(path: "version", reason: "missing (a spec starts with its format version)")
        }
        guard version == VMSpec.currentVersion else {
            throw JSONCoding.Failure(path: "version", reason: "this VMM reads spec version \(VMSpec.currentVersion), the file is version \(version)")
        }
        return try JSONCoding.decode(VMSpec.self, from: value)
    }

    /// The snapshot directory when the VM is restored.
    public var restoreDirectory: String? {
        if case let .restore(directory) = boot { return directory }
        return nil
    }
}
