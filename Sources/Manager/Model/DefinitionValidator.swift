import VMSpec
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
    /// The guest kernel and image initramfs an image VM gets when its definition names none (the
    /// daemon's VIREO_KERNEL and VIREO_IMAGE_INITRAMFS, or the newest cached image initramfs).
    public var imageKernel: String?
    public var imageInitrd: String?

    public init(checkFile: @escaping @Sendable (String) -> FileCheck = DefinitionValidator.checkOnDisk,
                readSnapshot: (@Sendable (String) throws -> SnapshotInfo)? = nil,
                hostCPUs: Int = Int(sysconf(Int32(_SC_NPROCESSORS_CONF)))) {
        self.checkFile = checkFile
        self.readSnapshot = readSnapshot
        self.hostCPUs = max(1, hostCPUs)
    }

    /// The fields a definition has, in the order errors are looked for.
    public static let fields = ["name", "kernel", "initrd", "cmdline", "cpus", "memoryMiB", "autostart", "restartPolicy",
                                "restore", "disks", "nets", "rng", "pit", "resources", "isolation", "image"]
    /// What a restored VM takes from its snapshot and so cannot be given.
    static let fixedBySnapshot = ["kernel", "initrd", "cmdline", "cpus", "memoryMiB", "nets", "rng", "pit"]

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
        if let imageValue = members["image"] {
            return try createImageVM(name: name, image: imageValue, members: members)
        }
        if let restoreValue = members["restore"] {
            try refuseFixedBySnapshot(members)
            let directory = try snapshotDirectory(restoreValue)
            let info = try snapshot(directory)
            // The snapshot names its kernel: it must be under the roots like a given one.
            _ = try confine(info.kernel, "restore")
            var definition = VMDefinition(name: name, kernel: info.kernel, cmdline: info.cmdline, cpus: info.cpus,
                                          memoryMiB: info.memoryMiB, restore: directory)
            try apply(members, to: &definition)
            try checkSpec(definition)
            try checkDiskCount(definition.disks, against: info)
            return definition
        }
        guard let kernelValue = members["kernel"] else {
            throw .missingField("kernel", hint: "(or 'restore' with a snapshot directory, or 'image' with an OCI image)")
        }
        var definition = VMDefinition(name: name, kernel: try path(kernelValue, "kernel"))
        try apply(members, to: &definition)
        try checkSpec(definition)
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
        if members["image"] != nil {
            throw .invalidField("image", "field 'image' cannot be changed: create a new VM for another image or command")
        }
        if existing.restore != nil { try refuseFixedBySnapshot(members) }
        if let kernelValue = members["kernel"] { definition.kernel = try path(kernelValue, "kernel") }
        try apply(members, to: &definition)
        try checkSpec(definition)
        if let directory = existing.restore, members["disks"] != nil {
            try checkDiskCount(definition.disks, against: try snapshot(directory))
        }
        return definition
    }

    /// An image VM: the image section, the guest kernel and initramfs (given or the daemon's), and
    /// the image init's command line unless one is given.
    private func createImageVM(name: String, image: JSONValue, members: [String: JSONValue]) throws(APIError) -> VMDefinition {
        if members["restore"] != nil {
            throw .invalidField("restore", "field 'restore' cannot be combined with 'image': an image VM boots its image")
        }
        let section = try imageSection(image)
        let kernel: String
        if let kernelValue = members["kernel"] {
            kernel = try path(kernelValue, "kernel")
        } else {
            guard let imageKernel else {
                throw .missingField("kernel", hint: "(this daemon has no default guest kernel for image VMs: set VIREO_KERNEL for it, or give 'kernel')")
            }
            kernel = try path(.string(imageKernel), "kernel")
        }
        var definition = VMDefinition(name: name, kernel: kernel, cmdline: VMDefinition.imageCmdline, image: section)
        if members["initrd"] == nil {
            guard let imageInitrd else {
                throw .missingField("initrd", hint: "(this daemon has no image initramfs: set VIREO_IMAGE_INITRAMFS for it, or give 'initrd')")
            }
            definition.initrd = try path(.string(imageInitrd), "initrd")
        }
        try apply(members, to: &definition)
        guard definition.initrd != nil else { throw .invalidField("initrd", "field 'initrd' cannot be null for an image VM: the image init lives there") }
        try checkSpec(definition)
        return definition
    }

    private func imageSection(_ value: JSONValue) throws(APIError) -> ImageDefinition {
        let members = try object(value, "image", keys: ImageDefinition.fields)
        guard let referenceValue = members["reference"] else { throw .missingField("image.reference") }
        let reference = try string(referenceValue, "image.reference")
        guard !reference.isEmpty else { throw .invalidField("image.reference", "field 'image.reference' must not be empty") }
        var section = ImageDefinition(reference: reference)
        func strings(_ key: String) throws(APIError) -> [String]? {
            guard let value = members[key], value != .null else { return nil }
            guard case let .array(items) = value else {
                throw .invalidField("image.\(key)", "field 'image.\(key)' must be an array of strings, got \(value.typeDescription)")
            }
            var result: [String] = []
            for item in items { result.append(try string(item, "image.\(key)")) }
            return result
        }
        func text(_ key: String) throws(APIError) -> String? {
            guard let value = members[key], value != .null else { return nil }
            return try string(value, "image.\(key)")
        }
        section.command = try strings("command")
        section.env = try strings("env")
        section.entrypoint = try text("entrypoint")
        section.workdir = try text("workdir")
        section.user = try text("user")
        if let workdir = section.workdir, !workdir.hasPrefix("/") {
            throw .invalidField("image.workdir", "field 'image.workdir' must be an absolute path, got \(JSONValue.string(workdir).serialized())")
        }
        if let env = section.env, let bad = env.first(where: { !$0.contains("=") || $0.hasPrefix("=") }) {
            throw .invalidField("image.env", "field 'image.env' entries must be KEY=VALUE, got \(JSONValue.string(bad).serialized())")
        }
        let all = (section.command ?? []) + (section.env ?? []) + [reference, section.entrypoint ?? "", section.workdir ?? "", section.user ?? ""]
        if all.contains(where: { $0.utf8.contains(0) }) {
            throw .invalidField("image", "field 'image' must not contain NUL bytes")
        }
        return section
    }

    /// The shared limits (`SpecValidator`, as `vireo run` applies them), with the same words.
    private func checkSpec(_ definition: VMDefinition) throws(APIError) {
        do {
            try SpecValidator.validate(definition.spec)
        } catch {
            throw .invalidField(error.field, error.message(.api))
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
            definition.cmdline = try string(value, "cmdline")
        }
        if let value = members["cpus"] {
            definition.cpus = try integer(value, "cpus")
        }
        if let value = members["memoryMiB"] {
            definition.memoryMiB = try integer(value, "memoryMiB")
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
        if let value = members["pit"] { definition.pit = value == .null ? nil : try bool(value, "pit") }
        if let value = members["disks"] { definition.disks = try disks(value) }
        if let value = members["nets"] { definition.nets = try nets(value) }
        if let value = members["resources"] {
            // Merge-patch semantics (RFC 7396): given keys change, null clears, absent keys stay.
            definition.resources = value == .null ? ResourceSettings() : try resources(value, base: definition.resources)
        }
        if let value = members["isolation"] {
            definition.isolation = value == .null ? IsolationDefinition() : try isolation(value, base: definition.isolation)
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
            // `vireo run --disk` separates options with commas: refused so that every VM the API
            // defines can also be written as a command line.
            for (name, value) in [("path", diskPath), ("backing", backing ?? "")] where value.contains(",") {
                throw .invalidField("\(field).\(name)", "field '\(field).\(name)' must not contain ',' (got '\(value)')")
            }
            // Duplicates, overlays and counts: SpecValidator.
            let readOnly = try members["readOnly"].map { (flag) throws(APIError) in try bool(flag, "\(field).readOnly") } ?? false
            disks.append(DiskDefinition(path: diskPath, readOnly: readOnly, backing: backing))
        }
        return disks
    }

    private func nets(_ value: JSONValue) throws(APIError) -> [NetDefinition] {
        var nets: [NetDefinition] = []
        for (index, item) in try array(value, "nets", limit: VMLimits.nets).enumerated() {
            let field = "nets[\(index)]"
            let members = try object(item, field, keys: ["mode", "tap", "mac", "ports", "ipv4"])
            guard let modeValue = members["mode"] else { throw .missingField("\(field).mode") }
            let modeText = try string(modeValue, "\(field).mode")
            guard let mode = NetDefinition.Mode(rawValue: modeText) else {
                throw .invalidField("\(field).mode", "field '\(field).mode' must be user or tap, got \(JSONValue.string(modeText).serialized())")
            }
            var net = NetDefinition(mode: mode)
            switch (mode, members["tap"]) {
            case (.tap, nil):
                throw .missingField("\(field).tap", hint: "(the host TAP device for mode tap)")
            case (_, let tapValue?):
                net.tap = try string(tapValue, "\(field).tap")  // its name and mode: SpecValidator
            case (.user, nil):
                break
            }
            if let macValue = members["mac"] {
                net.mac = try string(macValue, "\(field).mac").lowercased()
            }
            // Their shapes here; values, modes and duplicates: SpecValidator.
            if let ports = members["ports"], ports != .null {
                do { net.ports = try JSONCoding.decode([VMSpec.PortForward].self, from: ports) } catch {
                    throw .invalidField("\(field).ports", "field '\(field).ports' must be a list of {transport: tcp|udp, hostAddress?, hostPort: 1–65535, guestPort: 1–65535}")
                }
            }
            if let ipv4 = members["ipv4"], ipv4 != .null {
                do { net.ipv4 = try JSONCoding.decode(VMSpec.Net.IPv4.self, from: ipv4) } catch {
                    throw .invalidField("\(field).ipv4", "field '\(field).ipv4' must be {address, prefixLength, gateway, dns?}")
                }
            }
            nets.append(net)
        }
        return nets
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
            settings.cpuWeight = try integer(weight, "resources.cpuWeight")
        }
        if let cpuMax = members["cpuMax"], cpuMax != .null {
            let fields = try object(cpuMax, "resources.cpuMax", keys: ["quotaMicros", "periodMicros"])
            guard let quota = fields["quotaMicros"] else { throw .missingField("resources.cpuMax.quotaMicros") }
            var limit = ResourceSettings.CPUMax(quotaMicros: try integer(quota, "resources.cpuMax.quotaMicros"))
            if let period = fields["periodMicros"] {
                limit.periodMicros = try integer(period, "resources.cpuMax.periodMicros")
            }
            settings.cpuMax = limit
        }
        if let memory = members["memoryMaxMiB"], memory != .null {
            settings.memoryMaxMiB = try integer(memory, "resources.memoryMaxMiB")
        }
        if let affinity = members["cpuAffinity"], affinity != .null {
            var cpus: [Int] = []
            let items = try array(affinity, "resources.cpuAffinity", limit: 1...SpecLimits.cpuNumbers.count)
            for item in items {
                let cpu = try integer(item, "resources.cpuAffinity", in: SpecLimits.cpuNumbers, unit: "")
                // The host's CPUs are this side's own check; duplicates are SpecValidator's.
                guard cpu < hostCPUs else {
                    throw .invalidField("resources.cpuAffinity", "field 'resources.cpuAffinity': CPU \(cpu) does not exist on this host (it has CPUs 0–\(hostCPUs - 1))")
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
            guard SeccompMode(rawValue: text) != nil else {
                throw .invalidField("isolation.seccomp", "field 'isolation.seccomp' must be one of \(IsolationDefinition.seccompModes.joined(separator: ", ")); got \(JSONValue.string(text).serialized())")
            }
            settings.seccomp = text
        }
        if let jail = members["jail"] { settings.jail = jail == .null ? nil : try bool(jail, "isolation.jail") }
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

    /// An integer of any size; its range is SpecValidator's to check.
    private func integer(_ value: JSONValue, _ field: String) throws(APIError) -> Int {
        try integer(value, field, in: Int.min...Int.max, unit: "")
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
