/// A raw disk image attached to the VM as virtio-blk (`--disk PATH[,readonly][,backing=BASE]`).
public struct DiskDefinition: Codable, Sendable, Equatable {
    /// Absolute path of the image (with `backing`: of the copy-on-write overlay, created if missing).
    public var path: String
    public var readOnly: Bool
    /// A base image the overlay at `path` reads unwritten blocks from; the base is never written.
    public var backing: String?

    public init(path: String, readOnly: Bool = false, backing: String? = nil) {
        self.path = path
        self.readOnly = readOnly
        self.backing = backing
    }
}

/// A virtio-net NIC: user-mode networking through passt (no root), or an existing host TAP device.
/// The spec's own type: the API stores what the VMM is handed.
public typealias NetDefinition = VMSpec.Net

/// cgroup limits and vCPU pinning of a VM's VMM process (`--cpu-weight`, `--cpu-max`, `--memory-max`,
/// `--cpu-affinity`); absent values leave the host's defaults.
public struct ResourceSettings: Codable, Sendable, Equatable {
    /// CPU bandwidth: `quotaMicros` of CPU time per `periodMicros`.
    /// A CFS quota per period: the spec's own type (one default period, one set of names).
    public typealias CPUMax = VMSpec.Resources.CPUMax

    public var cpuWeight: Int?
    public var cpuMax: CPUMax?
    /// The whole VMM's memory limit (guest RAM plus overhead).
    public var memoryMaxMiB: Int?
    /// Host CPUs the VMM's threads run on.
    public var cpuAffinity: [Int]?

    public init(cpuWeight: Int? = nil, cpuMax: CPUMax? = nil, memoryMaxMiB: Int? = nil, cpuAffinity: [Int]? = nil) {
        self.cpuWeight = cpuWeight
        self.cpuMax = cpuMax
        self.memoryMaxMiB = memoryMaxMiB
        self.cpuAffinity = cpuAffinity
    }

    public var isEmpty: Bool { self == ResourceSettings() }
}

/// How the VMM process is confined (`--seccomp`, `--jail`, `--uid`, `--gid`).
public struct IsolationDefinition: Codable, Sendable, Equatable {
    /// Syscall filter mode: on, kill, log or off; nil is the VMM's default (on).
    public var seccomp: String?
    /// Namespaces + pivot_root into a per-VM directory, no capabilities. nil: the daemon's default,
    /// which is on wherever the host can jail (JailSupport); false opts out.
    public var jail: Bool?
    /// The unprivileged user (name or number) the VMM runs as once the VM is built.
    public var user: String?
    public var group: String?

    public init(seccomp: String? = nil, jail: Bool? = nil, user: String? = nil, group: String? = nil) {
        self.seccomp = seccomp
        self.jail = jail
        self.user = user
        self.group = group
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        seccomp = try container.decodeIfPresent(String.self, forKey: .seccomp)
        // Stored definitions from before the jail became the default always carry `jail`, false when
        // nobody asked: only a `true` there was a choice. Choices made since are `jailChoice`.
        if container.contains(.jailChoice) {
            jail = try container.decodeIfPresent(Bool.self, forKey: .jailChoice)
        } else {
            jail = try container.decodeIfPresent(Bool.self, forKey: .jail) == true ? true : nil
        }
        user = try container.decodeIfPresent(String.self, forKey: .user)
        group = try container.decodeIfPresent(String.self, forKey: .group)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(seccomp, forKey: .seccomp)
        try container.encodeIfPresent(jail, forKey: .jailChoice)
        try container.encodeIfPresent(user, forKey: .user)
        try container.encodeIfPresent(group, forKey: .group)
    }

    private enum CodingKeys: String, CodingKey { case seccomp, jail, jailChoice, user, group }

    public static let seccompModes = SeccompMode.allCases.map(\.rawValue)
}

/// What the daemon needs to know of a snapshot a VM is restored from; read (and verified) by the
/// VMM's snapshot reader, which the daemon is given so that this module does not link the VMM.
public struct SnapshotInfo: Sendable, Equatable {
    public var kernel: String
    public var cmdline: String
    public var cpus: Int
    public var memoryMiB: Int
    public var diskCount: Int

    public init(kernel: String, cmdline: String, cpus: Int, memoryMiB: Int, diskCount: Int) {
        self.kernel = kernel
        self.cmdline = cmdline
        self.cpus = cpus
        self.memoryMiB = memoryMiB
        self.diskCount = diskCount
    }
}
