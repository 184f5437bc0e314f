#if canImport(Glibc)
import Glibc
#endif

/// Turns a request body into a `VMDefinition`, or an error that names the one field that is wrong.
public struct DefinitionValidator: Sendable {
    /// What a path check found; injectable so unit tests need no files.
    public enum FileCheck: Sendable, Equatable { case regularFile, missing, notRegularFile, unreadable }

    public var checkFile: @Sendable (String) -> FileCheck
    /// Whether a directory exists (where an overlay would be created); injectable like `checkFile`.
    public var checkDirectory: @Sendable (String) -> Bool = { path in
        var info = stat()
        return stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR
    }
    /// Reads and verifies a snapshot directory (the VMM's reader); throws what is wrong with it.
    /// Without one, a snapshot only has to hold the two files a snapshot has.
    public var readSnapshot: (@Sendable (String) throws -> SnapshotInfo)?
    /// Host CPUs that `resources.cpuAffinity` may name: 0..<hostCPUs.
    public var hostCPUs: Int
    /// Where kernels, initrds, disks and snapshots may be; `/` (the default here) allows any path.
    public var imageRoots = ImageRoots(["/"])

    public init(checkFile: @escaping @Sendable (String) -> FileCheck = DefinitionValidator.checkOnDisk,
                readSnapshot: (@Sendable (String) throws -> SnapshotInfo)? = nil,
                hostCPUs: Int = Int(sysconf(Int32(_SC_NPROCESSORS_CONF)))) {
        self.checkFile = checkFile
        self.readSnapshot = readSnapshot
        self.hostCPUs = max(1, hostCPUs)
    }

    /// The fields a definition has, in the order errors are looked for.
    public static let fields = ["name", "kernel", "initrd", "cmdline", "cpus", "memoryMiB", "autostart", "restartPolicy",
                                "restore", "disks", "nets", "rng", "resources", "isolation"]
    /// What a restored VM takes from its snapshot and so cannot be given.
    static let fixedBySnapshot = ["kernel", "initrd", "cmdline", "cpus", "memoryMiB", "nets", "rng"]

    /// `[a-z0-9][a-z0-9-]{0,62}`: safe as a directory name and in a URL path.
    /// `subject` names it in messages (a body field, or the VM name in a URL path).
    public static func validateName(_ name: String, field: String = "name", subject: String? = nil) throws(APIError) {
        let subject = subject ?? "field '\(field)'"
        let bytes = Array(name.utf8)
        func ok(_ byte: UInt8, first: Bool) -> Bool {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                || (!first && byte == UInt8(ascii: "-"))
        }
        guard !bytes.isEmpty else { throw .invalidField(field, "\(subject) must not be empty") }
        guard bytes.count <= 63 else {
            throw .invalidField(field, "\(subject) is \(bytes.count) characters long; the limit is 63")
        }
        guard bytes.enumerated().allSatisfy({ ok($1, first: $0 == 0) }) else {
            throw .invalidField(field, "\(subject) must match [a-z0-9][a-z0-9-]{0,62} (lower-case letters, digits and '-', not starting with '-'); got \(JSONValue.string(name).serialized())")
        }
    }

    /// A new definition from a `POST /vms` body; absent fields take their defaults.
    public func create(from body: JSONValue) throws(APIError) -> VMDefinition {
        let members = try objectMembers(body)
        guard let nameValue = members["name"] else { throw .missingField("name") }
        let name = try string(nameValue, "name")
        try DefinitionValidator.validateName(name)
        if let restoreValue = members["restore"] {
            try refuseFixedBySnapshot(members)
            let directory = try snapshotDirectory(restoreValue)
            let info = try snapshot(directory)
            // The snapshot names its kernel: it must be under the roots like a given one.
            _ = try confine(info.kernel, "restore")
            var definition = VMDefinition(name: name, kernel: info.kernel, cmdline: info.cmdline, cpus: info.cpus,
                                          memoryMiB: info.memoryMiB, restore: directory)
            try apply(members, to: &definition)
        try checkDeviceSlots(definition)
            try checkDiskCount(definition.disks, against: info)
            return definition
        }
        guard let kernelValue = members["kernel"] else {
            throw .missingField("kernel", hint: "(or 'restore' with a snapshot directory)")
        }
        var definition = VMDefinition(name: name, kernel: try path(kernelValue, "kernel"))
        try apply(members, to: &definition)
        try checkDeviceSlots(definition)
        return definition
    }

    /// `existing` with the fields present in a `PATCH /vms/{name}` body changed.
    public func update(_ existing: VMDefinition, with body: JSONValue) throws(APIError) -> VMDefinition {
        let members = try objectMembers(body)
        var definition = existing
        if let nameValue = members["name"] {
            let name = try string(nameValue, "name")
            guard name == existing.name else {
                throw .invalidField("name", "field 'name' cannot be changed (the VM is '\(existing.name)', the body says '\(name)')")
            }
        }
        if members["restore"] != nil {
            throw .invalidField("restore", "field 'restore' cannot be changed: create a new VM from the snapshot")
        }
        if existing.restore != nil { try refuseFixedBySnapshot(members) }
        if let kernelValue = members["kernel"] { definition.kernel = try path(kernelValue, "kernel") }
        try apply(members, to: &definition)
        try checkDeviceSlots(definition)
        if let directory = existing.restore, members["disks"] != nil {
            try checkDiskCount(definition.disks, against: try snapshot(directory))
        }
        return definition
    }

    private func checkDeviceSlots(_ definition: VMDefinition) throws(APIError) {
        let used = definition.disks.count + definition.nets.count + (definition.rng ? 1 : 0)
        guard used <= VMLimits.virtioSlots else {
            throw .invalidField(definition.nets.isEmpty ? "disks" : "nets",
                                "field '\(definition.nets.isEmpty ? "disks" : "nets")': \(definition.disks.count) disk(s), \(definition.nets.count) NIC(s)\(definition.rng ? " and the rng" : "") need \(used) virtio slots; the VMM has \(VMLimits.virtioSlots)")
        }
    }

    private func checkDiskCount(_ disks: [DiskDefinition], against info: SnapshotInfo) throws(APIError) {
        guard disks.isEmpty || disks.count == info.diskCount else {
            throw .invalidField("disks", "field 'disks' lists \(disks.count) disk(s) but the snapshot has \(info.diskCount): give one per snapshot disk, or none to reopen the snapshot's own")
        }
    }

    private func refuseFixedBySnapshot(_ members: [String: JSONValue]) throws(APIError) {
        for field in DefinitionValidator.fixedBySnapshot where members[field] != nil {
            throw .invalidField(field, "field '\(field)' cannot be set on a VM restored from a snapshot: it comes from the snapshot")
        }
    }

    private func snapshotDirectory(_ value: JSONValue) throws(APIError) -> String {
        let directory = try confine(try absolutePath(value, "restore"), "restore")
        var info = stat()
        guard stat(directory, &info) == 0 else { throw .invalidField("restore", "field 'restore': no such directory '\(directory)'") }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw .invalidField("restore", "field 'restore': '\(directory)' is not a directory")
        }
        return directory
    }

    private func snapshot(_ directory: String) throws(APIError) -> SnapshotInfo {
        guard let readSnapshot else { throw .invalidField("restore", "field 'restore': this daemon cannot read snapshots") }
        do {
            return try readSnapshot(directory)
        } catch {
            throw .invalidField("restore", "field 'restore': \(error)")
        }
    }

    private func objectMembers(_ body: JSONValue) throws(APIError) -> [String: JSONValue] {
        guard case let .object(pairs) = body else {
            throw .malformedJSON("the body must be a JSON object, got \(body.typeDescription)")
        }
        var members: [String: JSONValue] = [:]
        for (key, value) in pairs {
            guard DefinitionValidator.fields.contains(key) else {
                throw .unknownField(key, allowed: DefinitionValidator.fields)
            }
            guard members[key] == nil else { throw .invalidField(key, "field '\(key)' appears more than once") }
            members[key] = value
        }
        return members
    }

    private func apply(_ members: [String: JSONValue], to definition: inout VMDefinition) throws(APIError) {
        if let value = members["initrd"] {
            definition.initrd = value == .null ? nil : try path(value, "initrd")
        }
        if let value = members["cmdline"] {
            let cmdline = try string(value, "cmdline")
            guard cmdline.utf8.count < VMLimits.cmdlineBytes else {
                throw .invalidField("cmdline", "field 'cmdline' is \(cmdline.utf8.count) bytes long; the limit is \(VMLimits.cmdlineBytes - 1)")
            }
            guard !cmdline.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
                throw .invalidField("cmdline", "field 'cmdline' must not contain control characters")
            }
            definition.cmdline = cmdline
        }
        if let value = members["cpus"] {
            definition.cpus = try integer(value, "cpus", in: VMLimits.cpus, unit: "")
        }
        if let value = members["memoryMiB"] {
            definition.memoryMiB = try integer(value, "memoryMiB", in: VMLimits.memoryMiB, unit: " MiB")
        }
        if let value = members["autostart"] { definition.autostart = try bool(value, "autostart") }
        if let value = members["restartPolicy"] {
            let text = try string(value, "restartPolicy")
            guard let policy = RestartPolicy(rawValue: text) else {
                throw .invalidField("restartPolicy", "field 'restartPolicy' must be one of no, on-failure, always; got \(JSONValue.string(text).serialized())")
            }
            definition.restartPolicy = policy
        }
        if let value = members["rng"] { definition.rng = try bool(value, "rng") }
        if let value = members["disks"] { definition.disks = try disks(value) }
        if let value = members["nets"] { definition.nets = try nets(value) }
        if let value = members["resources"] {
            // Merge-patch semantics (RFC 7396): given keys change, null clears, absent keys stay.
            definition.resources = value == .null ? ResourceSettings() : try resources(value, base: definition.resources)
        }
        if let value = members["isolation"] {
            definition.isolation = value == .null ? IsolationDefinition() : try isolation(value, base: definition.isolation)
        }
        if let limit = definition.resources.memoryMaxMiB,
           limit < definition.memoryMiB + VMLimits.memoryMaxOverheadMiB {
            throw .invalidField("resources.memoryMaxMiB", "field 'resources.memoryMaxMiB' is \(limit) MiB but the VM needs its \(definition.memoryMiB) MiB of RAM plus \(VMLimits.memoryMaxOverheadMiB) MiB for the VMM")
        }
    }

    private func bool(_ value: JSONValue, _ field: String) throws(APIError) -> Bool {
        guard let flag = value.boolValue else {
            throw .invalidField(field, "field '\(field)' must be a boolean, got \(value.typeDescription)")
        }
        return flag
    }

    /// The members of an object field, refusing keys it does not have.
    private func object(_ value: JSONValue, _ field: String, keys: [String]) throws(APIError) -> [String: JSONValue] {
        guard case let .object(pairs) = value else {
            throw .invalidField(field, "field '\(field)' must be an object, got \(value.typeDescription)")
        }
        var members: [String: JSONValue] = [:]
        for (key, member) in pairs {
            guard keys.contains(key) else {
                throw .invalidField("\(field).\(key)", "unknown field '\(field).\(key)'; the fields of '\(field)' are \(keys.joined(separator: ", "))")
            }
            members[key] = member
        }
        return members
    }

    private func array(_ value: JSONValue, _ field: String, limit: ClosedRange<Int>) throws(APIError) -> [JSONValue] {
        guard case let .array(items) = value else {
            throw .invalidField(field, "field '\(field)' must be an array, got \(value.typeDescription)")
        }
        guard limit.contains(items.count) else {
            throw .invalidField(field, "field '\(field)' has \(items.count) entries; the limit is \(limit.upperBound)")
        }
        return items
    }

    private func disks(_ value: JSONValue) throws(APIError) -> [DiskDefinition] {
        var disks: [DiskDefinition] = []
        for (index, item) in try array(value, "disks", limit: VMLimits.disks).enumerated() {
            let field = "disks[\(index)]"
            let members = try object(item, field, keys: ["path", "readOnly", "backing"])
            guard let pathValue = members["path"] else { throw .missingField("\(field).path") }
            var backing: String?
            if let backingValue = members["backing"], backingValue != .null {
                backing = try path(backingValue, "\(field).backing")
            }
            // An overlay is created by the VMM when missing; a plain image must exist.
            let diskPath = try path(pathValue, "\(field).path", creatable: backing != nil)
            // The VMM's --disk syntax separates options with commas.
            for (name, value) in [("path", diskPath), ("backing", backing ?? "")] where value.contains(",") {
                throw .invalidField("\(field).\(name)", "field '\(field).\(name)' must not contain ',' (got '\(value)')")
            }
            guard !disks.contains(where: { $0.path == diskPath || $0.backing == diskPath }) else {
                throw .invalidField("\(field).path", "field '\(field).path': '\(diskPath)' is attached twice")
            }
            if let backing, disks.contains(where: { $0.path == backing }) {
                throw .invalidField("\(field).backing", "field '\(field).backing': '\(backing)' is attached as a disk too; a base must only be read")
            }
            guard backing != diskPath else {
                throw .invalidField("\(field).backing", "field '\(field).backing': an overlay cannot be its own base")
            }
            let readOnly = try members["readOnly"].map { (flag) throws(APIError) in try bool(flag, "\(field).readOnly") } ?? false
            if readOnly && backing != nil {
                throw .invalidField("\(field).readOnly", "field '\(field).readOnly': an overlay takes the guest's writes; attach the base itself read-only instead")
            }
            disks.append(DiskDefinition(path: diskPath, readOnly: readOnly, backing: backing))
        }
        return disks
    }

    private func nets(_ value: JSONValue) throws(APIError) -> [NetDefinition] {
        var nets: [NetDefinition] = []
        for (index, item) in try array(value, "nets", limit: VMLimits.nets).enumerated() {
            let field = "nets[\(index)]"
            let members = try object(item, field, keys: ["mode", "tap", "mac"])
            guard let modeValue = members["mode"] else { throw .missingField("\(field).mode") }
            let modeText = try string(modeValue, "\(field).mode")
            guard let mode = NetDefinition.Mode(rawValue: modeText) else {
                throw .invalidField("\(field).mode", "field '\(field).mode' must be user or tap, got \(JSONValue.string(modeText).serialized())")
            }
            var net = NetDefinition(mode: mode)
            switch (mode, members["tap"]) {
            case (.tap, nil):
                throw .missingField("\(field).tap", hint: "(the host TAP device for mode tap)")
            case (.tap, let tapValue?):
                let tap = try string(tapValue, "\(field).tap")
                let ok = (1...15).contains(tap.utf8.count) && tap.utf8.allSatisfy {
                    $0.isASCIIAlphanumeric || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".")
                }
                guard ok else {
                    throw .invalidField("\(field).tap", "field '\(field).tap' must be a network interface name (1–15 letters, digits, '-', '_', '.'), got \(JSONValue.string(tap).serialized())")
                }
                net.tap = tap
            case (.user, .some):
                throw .invalidField("\(field).tap", "field '\(field).tap' is only for mode tap")
            case (.user, nil):
                break
            }
            if let macValue = members["mac"] {
                let mac = try string(macValue, "\(field).mac")
                guard let first = DefinitionValidator.macFirstOctet(mac) else {
                    throw .invalidField("\(field).mac", "field '\(field).mac' must be a MAC address XX:XX:XX:XX:XX:XX, got \(JSONValue.string(mac).serialized())")
                }
                guard first & 1 == 0 else {
                    throw .invalidField("\(field).mac", "field '\(field).mac' is a multicast address; a NIC needs a unicast one (even first octet)")
                }
                net.mac = mac.lowercased()
            }
            nets.append(net)
        }
        return nets
    }

    /// The first octet of `XX:XX:XX:XX:XX:XX`, or nil when it is not one.
    static func macFirstOctet(_ text: String) -> UInt8? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6, parts.allSatisfy({ $0.count == 2 }) else { return nil }
        let octets = parts.compactMap { UInt8($0, radix: 16) }
        return octets.count == 6 ? octets[0] : nil
    }

    private func resources(_ value: JSONValue, base: ResourceSettings) throws(APIError) -> ResourceSettings {
        let members = try object(value, "resources", keys: ["cpuWeight", "cpuMax", "memoryMaxMiB", "cpuAffinity"])
        var settings = base
        for (key, member) in members where member == .null {
            switch key {
            case "cpuWeight": settings.cpuWeight = nil
            case "cpuMax": settings.cpuMax = nil
            case "memoryMaxMiB": settings.memoryMaxMiB = nil
            default: settings.cpuAffinity = nil
            }
        }
        if let weight = members["cpuWeight"], weight != .null {
            settings.cpuWeight = try integer(weight, "resources.cpuWeight", in: VMLimits.cpuWeight, unit: " (the cgroup cpu.weight range)")
        }
        if let cpuMax = members["cpuMax"], cpuMax != .null {
            let fields = try object(cpuMax, "resources.cpuMax", keys: ["quotaMicros", "periodMicros"])
            guard let quota = fields["quotaMicros"] else { throw .missingField("resources.cpuMax.quotaMicros") }
            var limit = ResourceSettings.CPUMax(quotaMicros: try integer(quota, "resources.cpuMax.quotaMicros", in: VMLimits.cpuMaxQuotaMicros, unit: " µs"))
            if let period = fields["periodMicros"] {
                limit.periodMicros = try integer(period, "resources.cpuMax.periodMicros", in: VMLimits.cpuMaxPeriodMicros, unit: " µs")
            }
            settings.cpuMax = limit
        }
        if let memory = members["memoryMaxMiB"], memory != .null {
            settings.memoryMaxMiB = try integer(memory, "resources.memoryMaxMiB", in: VMLimits.memoryMiB, unit: " MiB")
        }
        if let affinity = members["cpuAffinity"], affinity != .null {
            var cpus: [Int] = []
            let items = try array(affinity, "resources.cpuAffinity", limit: 1...4096)
            for item in items {
                let cpu = try integer(item, "resources.cpuAffinity", in: 0...4095, unit: "")
                guard cpu < hostCPUs else {
                    throw .invalidField("resources.cpuAffinity", "field 'resources.cpuAffinity': CPU \(cpu) does not exist on this host (it has CPUs 0–\(hostCPUs - 1))")
                }
                guard !cpus.contains(cpu) else {
                    throw .invalidField("resources.cpuAffinity", "field 'resources.cpuAffinity' lists CPU \(cpu) twice")
                }
                cpus.append(cpu)
            }
            settings.cpuAffinity = cpus
        }
        return settings
    }

    private func isolation(_ value: JSONValue, base: IsolationDefinition) throws(APIError) -> IsolationDefinition {
        let members = try object(value, "isolation", keys: ["seccomp", "jail", "user", "group"])
        var settings = base
        if members["seccomp"] == .null { settings.seccomp = nil }
        if members["user"] == .null { settings.user = nil; settings.group = nil }
        if members["group"] == .null { settings.group = nil }
        if let mode = members["seccomp"], mode != .null {
            let text = try string(mode, "isolation.seccomp")
            guard IsolationDefinition.seccompModes.contains(text) else {
                throw .invalidField("isolation.seccomp", "field 'isolation.seccomp' must be one of \(IsolationDefinition.seccompModes.joined(separator: ", ")); got \(JSONValue.string(text).serialized())")
            }
            settings.seccomp = text
        }
        if let jail = members["jail"] { settings.jail = jail == .null ? false : try bool(jail, "isolation.jail") }
        if let user = members["user"], user != .null {
            let text = try string(user, "isolation.user")
            guard Int(text) != nil || getpwnam(text) != nil else {
                throw .invalidField("isolation.user", "field 'isolation.user': no user '\(text)' on this host")
            }
            settings.user = text
        }
        if let group = members["group"], group != .null {
            let text = try string(group, "isolation.group")
            guard Int(text) != nil || getgrnam(text) != nil else {
                throw .invalidField("isolation.group", "field 'isolation.group': no group '\(text)' on this host")
            }
            guard settings.user != nil else {
                throw .invalidField("isolation.group", "field 'isolation.group' needs 'isolation.user'")
            }
            settings.group = text
        }
        return settings
    }

    private func string(_ value: JSONValue, _ field: String) throws(APIError) -> String {
        guard let text = value.stringValue else {
            throw .invalidField(field, "field '\(field)' must be a string, got \(value.typeDescription)")
        }
        return text
    }

    private func integer(_ value: JSONValue, _ field: String, in range: ClosedRange<Int>, unit: String) throws(APIError) -> Int {
        guard let number = value.intValue else {
            throw .invalidField(field, "field '\(field)' must be an integer, got \(value.typeDescription)")
        }
        guard number >= Int64(range.lowerBound), number <= Int64(range.upperBound) else {
            throw .invalidField(field, "field '\(field)' must be between \(range.lowerBound) and \(range.upperBound)\(unit), got \(number)")
        }
        return Int(number)
    }

    /// A string field holding an absolute, usable path.
    private func absolutePath(_ value: JSONValue, _ field: String) throws(APIError) -> String {
        let path = try string(value, field)
        guard path.hasPrefix("/") else {
            throw .invalidField(field, "field '\(field)' must be an absolute path, got \(JSONValue.string(path).serialized())")
        }
        guard path.utf8.count < 4096, !path.utf8.contains(0) else {
            throw .invalidField(field, "field '\(field)' is not a usable path")
        }
        return path
    }

    /// A stored definition's paths against the roots again, before each start: the roots may have
    /// changed since it was created, or a link been planted since.
    public func checkPaths(_ definition: VMDefinition) throws(APIError) {
        _ = try confine(definition.kernel, "kernel")
        if let initrd = definition.initrd { _ = try confine(initrd, "initrd") }
        for (index, disk) in definition.disks.enumerated() {
            _ = try confine(disk.path, "disks[\(index)].path")
            if let backing = disk.backing { _ = try confine(backing, "disks[\(index)].backing") }
        }
        if let restore = definition.restore { _ = try confine(restore, "restore") }
    }

    /// `path` resolved under the image roots, or the refusal naming the field and the path.
    func confine(_ path: String, _ field: String) throws(APIError) -> String {
        do {
            return try imageRoots.resolve(path)
        } catch {
            throw .invalidField(field, "field '\(field)': '\(path)' \(error)")
        }
    }

    /// A readable regular file; with `creatable`, also a missing one whose directory exists (an
    /// overlay the VMM creates).
    private func path(_ value: JSONValue, _ field: String, creatable: Bool = false) throws(APIError) -> String {
        let path = try confine(try absolutePath(value, field), field)
        switch checkFile(path) {
        case .regularFile: return path
        case .missing where creatable:
            let directory = String(path[..<path.lastIndex(of: "/")!])
            guard checkDirectory(directory.isEmpty ? "/" : directory) else {
                throw .invalidField(field, "field '\(field)': the overlay's directory '\(directory)' does not exist")
            }
            return path
        case .missing: throw .invalidField(field, "field '\(field)': no such file '\(path)'")
        case .notRegularFile: throw .invalidField(field, "field '\(field)': '\(path)' is not a regular file")
        case .unreadable: throw .invalidField(field, "field '\(field)': '\(path)' is not readable")
        }
    }

    /// Looks at the file through stat(2) and access(2).
    @Sendable public static func checkOnDisk(_ path: String) -> FileCheck {
        var info = stat()
        guard stat(path, &info) == 0 else { return .missing }
        guard info.st_mode & S_IFMT == S_IFREG else { return .notRegularFile }
        return access(path, R_OK) == 0 ? .regularFile : .unreadable
    }
}

extension UInt8 {
    var isASCIIAlphanumeric: Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(self) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(self)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self)
    }
}
