/// A request on a VMM's control socket: one text line, so that a person with `socat` can type it.
public enum ControlRequest: Sendable, Equatable {
    case status, pause, resume, stop, kill
    /// Turns the connection into the guest's serial console.
    case console
    /// The balloon's target in MiB, as given (the VMM checks it against the guest's RAM).
    case balloon(String)
    case snapshot(directory: String)
    /// Hot attach to the empty disk slot with this `id=`: the backing comes as descriptors passed
    /// with the request (SCM_RIGHTS): one (a raw image, read-write) or three (overlay, its map,
    /// the read-only base).
    case attachDisk(id: String)
    /// Empties a slot `attachDisk` filled (the guest must have stopped using it).
    case detachDisk(id: String)

    /// Nil for a line that is no request.
    public init?(line: String) {
        switch line {
        case "status": self = .status
        case "pause": self = .pause
        case "resume": self = .resume
        case "stop": self = .stop
        case "kill": self = .kill
        case "console": self = .console
        case let text where text.hasPrefix("balloon "): self = .balloon(String(text.dropFirst("balloon ".count)))
        case let text where text.hasPrefix("snapshot "): self = .snapshot(directory: String(text.dropFirst("snapshot ".count)))
        case let text where text.hasPrefix("attach-disk "): self = .attachDisk(id: String(text.dropFirst("attach-disk ".count)))
        case let text where text.hasPrefix("detach-disk "): self = .detachDisk(id: String(text.dropFirst("detach-disk ".count)))
        default: return nil
        }
    }

    public var line: String {
        switch self {
        case .status: return "status"
        case .pause: return "pause"
        case .resume: return "resume"
        case .stop: return "stop"
        case .kill: return "kill"
        case .console: return "console"
        case let .balloon(argument): return "balloon " + argument
        case let .snapshot(directory): return "snapshot " + directory
        case let .attachDisk(id): return "attach-disk " + id
        case let .detachDisk(id): return "detach-disk " + id
        }
    }
}

/// One VM's exits so far, summed over its vCPUs.
public struct ExitCounts: Codable, Sendable, Equatable {
    public var io: UInt64
    public var mmio: UInt64
    public var emulated: UInt64
    public var injected: UInt64
    public var kicks: UInt64
    public var other: UInt64

    public init(io: UInt64 = 0, mmio: UInt64 = 0, emulated: UInt64 = 0, injected: UInt64 = 0, kicks: UInt64 = 0, other: UInt64 = 0) {
        self.io = io
        self.mmio = mmio
        self.emulated = emulated
        self.injected = injected
        self.kicks = kicks
        self.other = other
    }
}

/// What `status` reports: written by the VMM, read by the manager (and shown under `vmm` by the API).
public struct VMMStatus: Codable, Sendable, Equatable {
    /// `running`, `paused` or `stopping`.
    public var state: String
    public var vcpus: Int
    public var exits: ExitCounts
    /// Each device's counters as the device reports them (`rng`, `net`, `vsock`, `balloon`, `console`, `blk`).
    public var devices: JSONValue
    /// The isolation in force (seccomp mode, jail, ids, cgroups, vCPU pinning); null when none.
    public var isolation: JSONValue
    /// Whether the VM has KVM's in-kernel PIT (`--pit`); absent from older VMMs.
    public var pit: Bool?

    public init(state: String, vcpus: Int, exits: ExitCounts, devices: JSONValue, isolation: JSONValue, pit: Bool? = nil) {
        self.state = state
        self.vcpus = vcpus
        self.exits = exits
        self.devices = devices
        self.isolation = isolation
        self.pit = pit
    }
}

/// One reply line on the control socket: `ok`, then what the request produced.
public struct ControlReply: Codable, Sendable, Equatable {
    public var ok: Bool
    public var state: String?
    public var error: String?
    /// `status`'s answer; its fields sit at the reply's top level.
    public var status: VMMStatus?
    /// `console`: the connection now carries the serial console.
    public var console: Bool?
    /// `snapshot DIR`: where it went and how long it took.
    public var snapshot: String?
    public var ms: Int?
    public var balloonTargetMiB: UInt64?

    public init(ok: Bool, state: String? = nil, error: String? = nil, status: VMMStatus? = nil, console: Bool? = nil,
                snapshot: String? = nil, ms: Int? = nil, balloonTargetMiB: UInt64? = nil) {
        self.ok = ok
        self.state = state ?? status?.state
        self.error = error
        self.status = status
        self.console = console
        self.snapshot = snapshot
        self.ms = ms
        self.balloonTargetMiB = balloonTargetMiB
    }

    /// A refusal.
    public static func failure(_ message: String, state: String? = nil) -> ControlReply {
        ControlReply(ok: false, state: state, error: message)
    }

    private enum CodingKeys: String, CodingKey {
        case ok, state, error, vcpus, console, snapshot, ms
        case balloonTargetMiB = "balloon_target_mib"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        ok = try container.decode(Bool.self, forKey: .ok)
        status = container.contains(.vcpus) ? try VMMStatus(from: decoder) : nil
        state = try container.decodeIfPresent(String.self, forKey: .state)
        error = try container.decodeIfPresent(String.self, forKey: .error)
        console = try container.decodeIfPresent(Bool.self, forKey: .console)
        snapshot = try container.decodeIfPresent(String.self, forKey: .snapshot)
        ms = try container.decodeIfPresent(Int.self, forKey: .ms)
        balloonTargetMiB = try container.decodeIfPresent(UInt64.self, forKey: .balloonTargetMiB)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(ok, forKey: .ok)
        if let status {
            try status.encode(to: encoder)
        } else {
            try container.encodeIfPresent(state, forKey: .state)
        }
        try container.encodeIfPresent(error, forKey: .error)
        try container.encodeIfPresent(console, forKey: .console)
        try container.encodeIfPresent(snapshot, forKey: .snapshot)
        try container.encodeIfPresent(ms, forKey: .ms)
        try container.encodeIfPresent(balloonTargetMiB, forKey: .balloonTargetMiB)
    }

    /// The reply as its one JSON line (without the newline).
    public var line: String {
        (try? JSONCoding.encode(self).serialized()) ?? #"{"ok":false,"error":"the reply could not be encoded"}"#
    }

    /// A reply line; throws when it is not JSON or not a reply.
    public static func parse(_ line: String) throws -> ControlReply {
        try JSONCoding.decode(ControlReply.self, from: try JSONParser.parse(line))
    }
}

/// JSONValue is its own Codable form, so typed messages can carry free-form parts (device counters).
extension JSONValue: Codable {
    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .null: var single = encoder.singleValueContainer(); try single.encodeNil()
        case let .bool(flag): var single = encoder.singleValueContainer(); try single.encode(flag)
        case let .int(number): var single = encoder.singleValueContainer(); try single.encode(number)
        case let .double(number): var single = encoder.singleValueContainer(); try single.encode(number)
        case let .string(text): var single = encoder.singleValueContainer(); try single.encode(text)
        case let .array(items):
            var list = encoder.unkeyedContainer()
            for item in items { try list.encode(item) }
        case let .object(members):
            var object = encoder.container(keyedBy: Key.self)
            for member in members { try object.encode(member.value, forKey: Key(stringValue: member.key)) }
        }
    }

    public init(from decoder: any Decoder) throws {
        if let object = try? decoder.container(keyedBy: Key.self) {
            self = .object(try object.allKeys.map { ($0.stringValue, try object.decode(JSONValue.self, forKey: $0)) })
        } else if var list = try? decoder.unkeyedContainer() {
            var items: [JSONValue] = []
            while !list.isAtEnd { items.append(try list.decode(JSONValue.self)) }
            self = .array(items)
        } else {
            let single = try decoder.singleValueContainer()
            if single.decodeNil() { self = .null }
            else if let flag = try? single.decode(Bool.self) { self = .bool(flag) }
            else if let number = try? single.decode(Int64.self) { self = .int(number) }
            else if let number = try? single.decode(Double.self) { self = .double(number) }
            else { self = .string(try single.decode(String.self)) }
        }
    }
}
