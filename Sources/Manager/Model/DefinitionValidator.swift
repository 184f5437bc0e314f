#if canImport(Glibc)
import Glibc
#endif

/// Turns a request body into a `VMDefinition`, or an error that names the one field that is wrong.
public struct DefinitionValidator: Sendable {
    /// What a path check found; injectable so unit tests need no files.
    public enum FileCheck: Sendable, Equatable { case regularFile, missing, notRegularFile, unreadable }

    public var checkFile: @Sendable (String) -> FileCheck

    public init(checkFile: @escaping @Sendable (String) -> FileCheck = DefinitionValidator.checkOnDisk) {
        self.checkFile = checkFile
    }

    /// The fields a definition has, in the order errors are looked for.
    public static let fields = ["name", "kernel", "initrd", "cmdline", "cpus", "memoryMiB", "autostart", "restartPolicy"]

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
        guard let kernelValue = members["kernel"] else { throw .missingField("kernel") }
        var definition = VMDefinition(name: name, kernel: try path(kernelValue, "kernel"))
        try apply(members, to: &definition)
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
        if let kernelValue = members["kernel"] { definition.kernel = try path(kernelValue, "kernel") }
        try apply(members, to: &definition)
        return definition
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
        if let value = members["autostart"] {
            guard let flag = value.boolValue else {
                throw .invalidField("autostart", "field 'autostart' must be a boolean, got \(value.typeDescription)")
            }
            definition.autostart = flag
        }
        if let value = members["restartPolicy"] {
            let text = try string(value, "restartPolicy")
            guard let policy = RestartPolicy(rawValue: text) else {
                throw .invalidField("restartPolicy", "field 'restartPolicy' must be one of no, on-failure, always; got \(JSONValue.string(text).serialized())")
            }
            definition.restartPolicy = policy
        }
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

    private func path(_ value: JSONValue, _ field: String) throws(APIError) -> String {
        let path = try string(value, field)
        guard path.hasPrefix("/") else {
            throw .invalidField(field, "field '\(field)' must be an absolute path, got \(JSONValue.string(path).serialized())")
        }
        guard path.utf8.count < 4096, !path.utf8.contains(0) else {
            throw .invalidField(field, "field '\(field)' is not a usable path")
        }
        switch checkFile(path) {
        case .regularFile: return path
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
