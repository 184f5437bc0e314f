import Foundation

/// One VM as the daemon keeps it: the user's definition plus what the Supervisor knows of its run.
/// Stored as one row of the `vms` table.
public struct VMRecord: Codable, Sendable, Equatable {
    public var name: String
    public var kernel: String
    public var initrd: String?
    public var cmdline: String
    public var cpus: Int
    public var memoryMiB: Int
    public var autostart: Bool
    public var restartPolicy: RestartPolicy
    public var restore: String?
    public var disks: [DiskDefinition]
    public var nets: [NetDefinition]
    public var rng: Bool
    /// nil: the VMM decides (NULL in rows older than migration v5).
    public var pit: Bool?
    public var resources: ResourceSettings
    public var isolation: IsolationDefinition
    /// The image section (JSON text; NULL for kernel VMs and rows older than migration v4).
    public var image: ImageDefinition?

    public var state: VMState
    /// The VMM (`vireo run`) process while there is one.
    public var pid: Int32?
    /// Its start time in clock ticks since boot (/proc/PID/stat field 22): guards against pid reuse.
    public var pidStartTime: Int64?
    /// The shim process that waits for the VMM and records its exit status.
    public var shimPid: Int32?
    public var startedAt: Date?
    public var stateChangedAt: Date
    public var createdAt: Date
    public var updatedAt: Date
    /// Starts made by the restart policy since the user last started the VM.
    public var restartCount: Int
    public var lastExitStatus: Int?
    public var lastExitReason: String?
    public var lastExitAt: Date?

    public init(definition: VMDefinition, now: Date = Date()) {
        name = definition.name
        kernel = definition.kernel
        initrd = definition.initrd
        cmdline = definition.cmdline
        cpus = definition.cpus
        memoryMiB = definition.memoryMiB
        autostart = definition.autostart
        restartPolicy = definition.restartPolicy
        restore = definition.restore
        disks = definition.disks
        nets = definition.nets
        rng = definition.rng
        pit = definition.pit
        resources = definition.resources
        isolation = definition.isolation
        image = definition.image
        state = .defined
        stateChangedAt = now
        createdAt = now
        updatedAt = now
        restartCount = 0
    }

    public var definition: VMDefinition {
        get {
            VMDefinition(name: name, kernel: kernel, initrd: initrd, cmdline: cmdline, cpus: cpus,
                         memoryMiB: memoryMiB, autostart: autostart, restartPolicy: restartPolicy, restore: restore,
                         disks: disks, nets: nets, rng: rng, pit: pit, resources: resources, isolation: isolation, image: image)
        }
        set {
            kernel = newValue.kernel
            initrd = newValue.initrd
            cmdline = newValue.cmdline
            cpus = newValue.cpus
            memoryMiB = newValue.memoryMiB
            autostart = newValue.autostart
            restartPolicy = newValue.restartPolicy
            restore = newValue.restore
            disks = newValue.disks
            nets = newValue.nets
            rng = newValue.rng
            pit = newValue.pit
            resources = newValue.resources
            isolation = newValue.isolation
            image = newValue.image
        }
    }

    /// Seconds since the current run started, while there is one.
    public func uptime(now: Date = Date()) -> Double? {
        guard state.hasProcess, let startedAt else { return nil }
        return max(0, now.timeIntervalSince(startedAt))
    }
}

/// A lifecycle event: stored in the `events` table and streamed on `GET /events`.
public struct VMEvent: Codable, Sendable, Equatable {
    /// Increasing id; `GET /events?since=ID` replays what came after it.
    public var id: Int64?
    public var time: Date
    /// The VM, or nil for daemon events.
    public var vm: String?
    /// created, updated, deleted, starting, started, stopping, stopped, crashed, error, paused, resumed,
    /// killed, restarting, adopted, daemon-started.
    public var type: String
    public var state: VMState?
    public var message: String

    public init(id: Int64? = nil, time: Date = Date(), vm: String?, type: String, state: VMState?, message: String) {
        self.id = id
        self.time = time
        self.vm = vm
        self.type = type
        self.state = state
        self.message = message
    }
}
